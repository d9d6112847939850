"""What makes a product's record at a machine: a profile's ``trace:`` section. Data, not
code; validated with the profile (gateway/profiles.py checks the point names)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.durations import Duration

#: the context kind of a product code read by a code reader (a device's context_for)
CONTEXT = "context"
_SUFFIX = re.compile(r"^[0-9]+(\.[0-9]+)+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Summary(_Strict):
    """A key process value summarised over the product's time at the machine, with
    optional limits that give the verdict."""

    point: str = Field(description="a numeric point of the profile")
    above: float | None = Field(
        default=None, description="threshold for 'time above' (e.g. a cure temperature): "
        "the seconds the value was above it")
    min: float | None = Field(
        default=None, description="limit: every sample at least this (else the verdict fails)")
    max: float | None = Field(
        default=None, description="limit: every sample at most this (else the verdict fails)")
    min_time_above: Duration | None = Field(
        default=None, description="limit: at least this long above 'above'")

    @model_validator(mode="after")
    def _above(self) -> Summary:
        if self.min_time_above is not None and self.above is None:
            raise ValueError(f"trace.summaries[{self.point}]: min_time_above needs 'above' "
                             "(the threshold)")
        return self

    def limited(self) -> bool:
        return self.min is not None or self.max is not None or self.min_time_above is not None


class TraceSpec(_Strict):
    """When a product is at the machine, which code it has, what is summarised."""

    code: str = Field(
        default=CONTEXT, description="where the product code comes from: 'context' (the "
        "product code a code reader reads for this machine: its context_for) or a string "
        "point of the profile")
    code_prefix: str | None = Field(
        default=None, description="with a point that holds only the suffix (a PLC's "
        "barcode register): the identifier prefix to put before it, e.g. 88.118.8")
    states: list[str] = Field(
        default_factory=lambda: ["running"], description="machine states in which a product "
        "is being made; the product's record starts when one begins with a code known and "
        "ends when it ends (or another code arrives)")
    active_point: str | None = Field(
        default=None, description="instead of states: a bool point, true while a product is "
        "in process (a cycle-active signal)")
    recipe: str | None = Field(default=None, description="point holding the recipe/program")
    summaries: list[Summary] = Field(
        default_factory=list, description="process values summarised per product (min, max, "
        "mean, final, samples, time above a threshold), with limits for the verdict")
    inputs: bool = Field(
        default=True, description="list the material batch codes read by code readers for "
        "this machine (context 'batch') as the product's inputs (genealogy)")
    batch_output: bool = Field(
        default=False, description="this station makes batches (a mixer): its records are "
        "batch records, and the code is a batch code")

    @model_validator(mode="after")
    def _check(self) -> TraceSpec:
        if self.code_prefix is not None and (self.code == CONTEXT
                                             or not _SUFFIX.match(self.code_prefix)):
            raise ValueError("trace.code_prefix: an identifier prefix such as 88.118.8, with "
                             "a 'code' point that holds the suffix")
        names = [s.point for s in self.summaries]
        if len(set(names)) != len(names):
            raise ValueError(f"trace.summaries: a point is summarised twice: {names}")
        return self

    def points(self) -> set[str]:
        """Every point the section names."""
        names = {self.active_point, self.recipe, None if self.code == CONTEXT else self.code}
        names |= {s.point for s in self.summaries}
        return {n for n in names if n is not None}


#: the statistics of each summarised point, as record fields ``<point>_<stat>``
STATS: tuple[str, ...] = ("min", "max", "mean", "final", "n", "above_s")
#: the record's own fields, before the summaries'
FIELDS: tuple[str, ...] = ("code", "kind", "machine", "end", "duration_s", "recipe", "verdict",
                           "why", "interrupted", "gap_s", "resumed", "inputs")


def record_fields(spec: TraceSpec) -> list[str]:
    """A trace record's field names for ``spec`` (fixed per profile: the compact schema)."""
    return [*FIELDS, *(f"{s.point}_{st}" for s in spec.summaries for st in STATS)]
