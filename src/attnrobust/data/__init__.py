"""Datasets: synthetic generators, real downloaders, format parsers, prepared-data IO.

``load_prepared`` is imported lazily so that download and parsing code does not pay for torch.
"""


def __getattr__(name: str):
    if name == "load_prepared":
        from attnrobust.data.prepared import load_prepared

        return load_prepared
    raise AttributeError(name)


__all__ = ["load_prepared"]
