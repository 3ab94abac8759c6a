"""A pytest plugin that makes pytest-xdist's ``--dist loadgroup`` group again (tests/conftest.py loads it).

`make test` runs ``-n 2 --dist loadgroup`` so that every test marked ``xdist_group("pipeline")``
(the ones that read the session's tiny pipeline) runs on one worker and the pipeline is built
once. pytest-xdist 3.8 forms a group by renaming each marked test's node id to ``<id>@<group>``
through ``item._nodeid``, which pytest 9.2 no longer reads (a node keeps its id in ``item._id``):
no group formed, and both workers built the pipeline (seen in the clean-clone CI). This renames
the ids the way xdist means to, for either pytest, after xdist's own hook.
"""
from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "loadgroup", False):  # set by xdist in its workers under --dist loadgroup
        return
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        if not names or "@" in item.nodeid:  # ungrouped, or xdist renamed it already
            continue
        grouped = f"{item.nodeid}@{'_'.join(names)}"
        if hasattr(item, "_id"):  # pytest >= 9.2
            from _pytest.nodeid import coerce_node_id

            item._id = coerce_node_id(grouped)
        else:
            item._nodeid = grouped
