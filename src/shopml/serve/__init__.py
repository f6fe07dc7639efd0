"""One HTTP service and web page over a shopml work directory (``shopml serve --workdir DIR``)."""
