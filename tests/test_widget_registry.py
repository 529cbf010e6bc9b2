"""Widget registries (hub_collab/kernels/widgets.py) without a kernel.

* The state bounds: an owner's kernels of a notebook together (``max_state_bytes``) and
  all of a notebook's kernels together (``max_notebook_state_bytes``). The service-level
  test with real per-user kernels is
  ``tests/test_widgets.py::test_a_kernel_and_a_notebook_hold_at_most_their_bounds_of_widget_state``.
* One owner's kernels (one in use, one kept after a switch) and their models in the same
  docs: after a service restart each adopts its own, and one running a cell again takes
  that cell's models from the other.
"""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc

from hub_collab.documents.outputs import widgets_root
from hub_collab.errors import TooLarge
from hub_collab.kernels.widgets import WIDGET_TARGET, WidgetLimits, WidgetRegistry, _size


def opened(registry: WidgetRegistry, doc: Doc[Any], comm_id: str, value: str, cell: str = "c0") -> None:
    state = {"_model_name": "TextModel", "_model_module": "@jupyter-widgets/controls", "value": value}
    msg = {"msg_type": "comm_open", "content": {"comm_id": comm_id, "target_name": WIDGET_TARGET, "data": {"state": state}}}
    assert registry.handle_iopub(msg, (cell, doc))


SMALL = WidgetLimits(max_state_bytes=1000, max_notebook_state_bytes=3000)


def registry(mine: int = 0, others: int = 0, owner: str | None = "alice", kernel_id: str = "", limits: WidgetLimits = SMALL) -> WidgetRegistry:
    """A kernel's registry as KernelService makes it: its owner's other kernels hold
    ``mine`` bytes of state, all the notebook's other kernels ``others``."""
    r = WidgetRegistry(limits)
    r.mine = lambda: mine
    r.others = lambda: others
    r.owner, r.kernel_id = owner, kernel_id
    return r


def size_of(value: str) -> int:
    return _size({"_model_name": "TextModel", "_model_module": "@jupyter-widgets/controls", "value": value})


def test_an_owners_other_kernels_count_toward_its_share() -> None:
    doc: Doc[Any] = Doc()
    r = registry(mine=1000 - size_of("a" * 10), others=0)
    opened(r, doc, "fits", "a" * 10)  # exactly the owner's share
    assert "fits" in widgets_root(doc)
    opened(r, doc, "over", "b")  # one model more: not kept
    assert "over" not in widgets_root(doc)
    with pytest.raises(TooLarge, match="the widgets of your kernels in this notebook would exceed 1000 bytes"):
        r.client_update("alice", "c0", "fits", {"value": "a" * 11})
    r.client_update("alice", "c0", "fits", {"value": "a" * 9})  # smaller always fits


def test_the_notebooks_other_kernels_count_toward_its_bound() -> None:
    doc: Doc[Any] = Doc()
    r = registry(mine=0, others=3000 - size_of("a" * 10))
    opened(r, doc, "fits", "a" * 10)
    with pytest.raises(TooLarge, match="the widgets of the notebook's kernels would exceed 3000 bytes"):
        r.client_update("alice", "c0", "fits", {"value": "a" * 11})
    opened(r, doc, "over", "")
    assert list(widgets_root(doc)) == ["fits"]


def test_the_shared_kernels_share_is_named_so() -> None:
    doc: Doc[Any] = Doc()
    r = registry(mine=990, others=0, owner=None)
    opened(r, doc, "small", "")
    assert "small" not in widgets_root(doc)
    r2 = registry(mine=0, others=0, owner=None)
    opened(r2, doc, "m", "x")
    r2.mine = lambda: 1000
    with pytest.raises(TooLarge, match="the widgets of the notebook's shared kernels would exceed 1000 bytes"):
        r2.client_update("bob", "c0", "m", {"value": "xy"})


def kernel(kernel_id: str) -> WidgetRegistry:
    return registry(kernel_id=kernel_id, limits=WidgetLimits())


def test_after_a_restart_each_of_an_owners_kernels_adopts_its_own_models() -> None:
    c0: Doc[Any] = Doc()
    c1: Doc[Any] = Doc()
    before_a, before_b = kernel("local python3"), kernel("server:gpu python3")
    opened(before_a, c0, "a0", "from a", "c0")
    opened(before_b, c1, "b1", "from b", "c1")
    docs = [("c0", c0), ("c1", c1)]
    # the restarted service: both kernels are found again and look at the same docs
    a, b = kernel("local python3"), kernel("server:gpu python3")
    assert a.adopt(docs, untagged=False) == 1 and set(a.models) == {"a0"}
    assert b.adopt(docs, untagged=False) == 1 and set(b.models) == {"b1"}
    assert a.total == before_a.total and b.total == before_b.total
    # each kernel's comm_info_reply names only its own comms: the other's stay in the docs
    a.keep_only(["a0"])
    b.keep_only(["b1"])
    assert set(widgets_root(c0)) == {"a0"} and set(widgets_root(c1)) == {"b1"}
    # models written before kernels were named: the owner's only kernel takes them
    untagged: Doc[Any] = Doc()
    opened(kernel(""), untagged, "old", "x")
    widgets_root(untagged)["old"].pop("kernel")
    assert kernel("local python3").adopt([("c2", untagged)], untagged=False) == 0
    assert kernel("local python3").adopt([("c2", untagged)], untagged=True) == 1


def test_a_cell_run_by_another_of_the_owners_kernels_takes_its_models_from_the_first() -> None:
    doc: Doc[Any] = Doc()
    kept, now = kernel("local python3"), kernel("server:gpu python3")
    opened(kept, doc, "old", "x" * 100)
    assert kept.total > 100
    # the kernel in use runs the cell again: the doc's models go, and the kept kernel
    # forgets them (its share is free again; the doc is the new kernel's)
    now.forget_doc(doc)
    kept.let_go(doc)
    assert kept.models == {} and kept.total == 0 and len(widgets_root(doc)) == 0
    opened(now, doc, "new", "y")
    kept.forget_all()  # the kept kernel goes: the new kernel's models stay
    assert set(widgets_root(doc)) == {"new"}
