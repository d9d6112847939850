"""``edgegw certs``: the gateway's keys and certificates, from the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.config import LoadedConfig, load_config
from gateway.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               with_config: Callable[[argparse.ArgumentParser], None]) -> None:
    cp = sub.add_parser("certs", help="keys and certificates: init, show, signing-key, "
                        "spool-key")
    csub = cp.add_subparsers(dest="certcmd", required=True)
    ci = csub.add_parser("init", help="make the gateway's TLS key (if missing) and a CSR "
                         "with the gateway id, for your CA to sign")
    with_config(ci)
    ci.add_argument("--key", type=Path, help="key file (default uplink.mqtt.tls.key_file, "
                    "else pki/gateway.key beside the config)")
    ci.add_argument("--key-type", choices=["ec-p256", "rsa-2048"], default="ec-p256")
    ci.add_argument("--new-key", action="store_true",
                    help="replace an existing key (default: a new CSR for the same key)")
    cs = csub.add_parser("show", help="subject, expiry and fingerprint of every certificate "
                         "and key the config uses; exit 1 if one is expired or unreadable")
    with_config(cs)
    cs.add_argument("files", nargs="*", type=Path, help="other certificate files to show")
    sk = csub.add_parser("signing-key", help="make the payload signing key (signing.key_file) "
                         "and print the ingest's config for it")
    with_config(sk)
    sk.add_argument("--force", action="store_true", help="replace an existing key")
    pk = csub.add_parser("spool-key", help="make the spool encryption key "
                         "(store.encryption_key_file)")
    with_config(pk)
    pk.add_argument("--force", action="store_true",
                    help="replace an existing key (batches sealed with it become unreadable)")


def run(args: argparse.Namespace) -> int:
    if args.certcmd == "show" and not args.config.is_file() and args.files:
        return _show(None, args.files)
    loaded = load_config(args.config)
    if args.certcmd == "init":
        return _init(loaded, args.key, args.key_type, args.new_key)
    if args.certcmd == "show":
        return _show(loaded, args.files)
    if args.certcmd == "signing-key":
        return _signing_key(loaded, args.force)
    return _spool_key(loaded, args.force)


def _init(loaded: LoadedConfig, key: Path | None, key_type: str, new_key: bool) -> int:
    from gateway.crypto import certs

    key_path = key or certs.default_key_path(loaded)
    kp, csr, created = certs.init(loaded, key_path, "rsa-2048" if key_type == "rsa-2048"
                                  else "ec-p256", new_key)
    print(f"key   {kp} ({'new, ' + key_type if created else 'existing'}; mode 600)")
    print(f"csr   {csr} (CN={loaded.config.gateway.id}, URI urn:edgegw:"
          f"{loaded.config.gateway.id})")
    print(f"      public key SHA-256 {certs.public_key_fingerprint(kp)}")
    print("next: have your CA sign the CSR, e.g.\n"
          f"  openssl x509 -req -in {csr} -CA ca.pem -CAkey ca.key -days 825 -out "
          f"{kp.with_suffix('.crt')}\n"
          "then set uplink.mqtt.tls.cert_file / key_file / ca_file and restart")
    return 0


def _show(loaded: LoadedConfig | None, files: list[Path]) -> int:
    from gateway.crypto import certs, signing
    from gateway.crypto.watch import configured_certs

    entries = configured_certs(loaded) if loaded is not None else []
    entries += [("(command line)", p) for p in files]
    bad = 0
    for where, path in entries:
        info = certs.read_cert(where, path)
        print(f"{where}: {path}")
        if info.problem is not None:
            print(f"  PROBLEM   {info.problem}")
            bad += 1
            continue
        days = info.days_left()
        assert days is not None
        assert info.not_after is not None
        print(f"  subject   {info.subject}\n  issuer    {info.issuer}")
        print(f"  expires   {info.not_after:%Y-%m-%d %H:%M} UTC ({int(days)} days)")
        print(f"  sha256    {info.sha256}")
        if (w := info.verdict()) is not None:
            print(f"  WARNING   {w}")
            bad += days < 0
    if loaded is not None:
        cfg = loaded.config
        if cfg.signing is not None:
            kp = loaded.resolve(cfg.signing.key_file)
            print(f"signing.key_file: {kp}")
            try:
                print(f"  key id    {cfg.signing.key_id} ({cfg.signing.algorithm})\n"
                      f"  sha256    {certs.public_key_fingerprint(kp)} (public key)")
                print(f"  public    {signing.public_path(kp)}")
            except (OSError, ValueError) as exc:
                print(f"  PROBLEM   {exc}")
                bad += 1
        if cfg.store.encryption_key_file is not None:
            kp = loaded.resolve(cfg.store.encryption_key_file)
            print(f"store.encryption_key_file: {kp}")
            try:
                mode = kp.stat().st_mode & 0o777
                print(f"  mode      {mode:o}{'' if mode & 0o077 == 0 else ' (TOO OPEN)'}")
            except OSError as exc:
                print(f"  PROBLEM   {exc.strerror}")
                bad += 1
    if not entries and (loaded is None or (loaded.config.signing is None
                                           and loaded.config.store.encryption_key_file is None)):
        print("no certificates or keys configured")
    return 1 if bad else 0


def _signing_key(loaded: LoadedConfig, force: bool) -> int:
    from gateway.crypto import certs, signing

    sc = loaded.config.signing
    if sc is None:
        raise ConfigError([(str(loaded.path), "signing is not configured (signing: "
                            "{key_file: keys/signing.key, key_id: <gateway>-1})")])
    path = loaded.resolve(sc.key_file)
    if force and path.exists():
        path.unlink()
    pub = signing.generate_key(path, sc.algorithm)
    print(f"key     {path} ({sc.algorithm}, mode 600)\npublic  {pub}\n"
          f"sha256  {certs.public_key_fingerprint(pub)}")
    print("copy the public key to the ingest host and add to ingest.yaml:\n"
          f"  signatures:\n    require: true\n    keys:\n      {sc.key_id}:\n"
          f"        public_key: {pub.name}\n        gateways: [{loaded.config.gateway.id}]")
    return 0


def _spool_key(loaded: LoadedConfig, force: bool) -> int:
    from gateway.crypto import spool

    kf = loaded.config.store.encryption_key_file
    if kf is None:
        raise ConfigError([(str(loaded.path), "store.encryption_key_file is not set")])
    path = loaded.resolve(kf)
    spool.generate(path, overwrite=force)
    print(f"spool key {path} (32 bytes, base64, mode 600): keep a copy in a safe place; "
          "without it the batches in the spool cannot be sent", file=sys.stdout)
    return 0
