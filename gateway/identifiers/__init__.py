"""Industrial identifier codes (Handle style ``88.<node>.<enterprise>/<suffix>``): the
grammar, generation from templates, and the client of an identifier-resolution
secondary node (registration, queries, resolution)."""
