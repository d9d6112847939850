"""Keys, certificates, payload signatures and spool encryption (``cryptography``)."""
