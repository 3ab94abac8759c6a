"""Datasets: synthetic generators, real downloaders, format parsers, prepared-data IO
(``attnrobust.data.prepared.load_prepared``). Submodules are imported explicitly: nothing here."""
