"""The one owner of the shared tables: :mod:`~shopml.formats.schemas` (the columns of every table
of docs/data.md) and :mod:`~shopml.formats.readers` (``read_<table>(source)`` -> validated
DataFrame). Every part reads the world directory through these."""
