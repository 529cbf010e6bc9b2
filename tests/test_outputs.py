"""Tests for hub_collab.kernels.outputs (OutputWriter and the out:<cell id> document)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import nbformat
import pytest
from pycrdt import Array, Doc, Text, TransactionEvent

from hub_collab.kernels.outputs import (
    DisplayRegistry,
    OutputWriter,
    outputs_to_nbformat,
    process_stream_text,
    read_state,
    seed_outputs,
)

# --------------------------------------------------------------------------------------------
# helpers


def stream(text: str, name: str = "stdout") -> dict[str, Any]:
    return {"header": {"msg_type": "stream"}, "content": {"name": name, "text": text}}


def msg(msg_type: str, **content: Any) -> dict[str, Any]:
    return {"msg_type": msg_type, "header": {"msg_type": msg_type}, "content": content}


def outputs(doc: Doc[Any]) -> Array[Any]:
    return doc.get("outputs", type=Array)


def state(doc: Doc[Any]) -> dict[str, Any]:
    return read_state(doc)


def texts(doc: Doc[Any]) -> list[str]:
    return [o["text"] for o in outputs_to_nbformat(doc) if o["output_type"] == "stream"]


class Remote:
    """A second Doc that only receives the updates the first one emits (like a client)."""

    def __init__(self, doc: Doc[Any]) -> None:
        self.doc: Doc[Any] = Doc()
        self.updates: list[bytes] = []
        self._sub = doc.observe(self._on_update)

    def _on_update(self, event: TransactionEvent) -> None:
        self.updates.append(event.update)
        self.doc.apply_update(event.update)


def running_writer(doc: Doc[Any] | None = None, **kwargs: Any) -> OutputWriter:
    writer = OutputWriter(doc if doc is not None else Doc(), **kwargs)
    writer.begin(executed_by="alice", queued=True)
    writer.start()
    return writer


# --------------------------------------------------------------------------------------------
# terminal semantics of stream text


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (["a", "b\n", "c"], "ab\nc"),
        (["10%\r20%\r30%"], "30%"),
        (["10%\r", "20%\r", "30%"], "30%"),
        (["100%\r", "done\n"], "done\n"),
        (["abc\rX"], "Xbc"),
        (["abc\r", "X"], "Xbc"),
        (["abc\r\nX"], "abc\nX"),
        (["abc\r", "\nX"], "abc\nX"),
        (["abc\b"], "ab"),
        (["abc\b\bX"], "aX"),
        (["ab", "\b\b\bX"], "X"),
        (["l1\nabc\r\bZ"], "l1\nZbc"),
        (["héllo😀\r", "ü"], "üéllo😀"),
        (["😀😀\b", "x\n", "y"], "😀x\ny"),
        (["a\n\rb\r\n\n"], "a\nb\n\n"),
    ],
)
@pytest.mark.parametrize("flush_each", [False, True])
def test_stream_terminal_semantics(chunks: list[str], expected: str, flush_each: bool) -> None:
    writer = running_writer()
    for chunk in chunks:
        writer.handle(stream(chunk))
        if flush_each:
            writer.flush()
    writer.flush()
    assert texts(writer.doc) == [expected]


def test_process_stream_text_reports_completed_lines() -> None:
    assert process_stream_text("", 0, "a\nb\nc") == ("a\nb\n", "c", 1)
    assert process_stream_text("abc", 0, "X") == ("", "Xbc", 1)
    assert process_stream_text("abc", 0, "\n") == ("abc\n", "", 0)


def test_streams_coalesce_per_name_and_split_on_change() -> None:
    writer = running_writer()
    for chunk in ["a", "b"]:
        writer.handle(stream(chunk))
    writer.flush()
    writer.handle(stream("c"))
    writer.flush()
    writer.handle(stream("E", "stderr"))
    writer.handle(stream("d"))
    writer.flush()
    writer.handle(stream("e"))
    writer.flush()
    assert outputs_to_nbformat(writer.doc) == [
        {"output_type": "stream", "name": "stdout", "text": "abc"},
        {"output_type": "stream", "name": "stderr", "text": "E"},
        {"output_type": "stream", "name": "stdout", "text": "de"},
    ]


def test_stream_edits_are_minimal_tail_edits() -> None:
    writer = running_writer()
    writer.handle(stream("header line\n" * 50 + "progress 10%"))
    writer.flush()
    text = outputs(writer.doc)[0]["text"]
    deltas: list[Any] = []
    sub = text.observe(lambda event: deltas.append(event.delta))
    writer.handle(stream("\rprogress 20%"))
    writer.flush()
    writer.handle(stream("\n"))
    writer.flush()
    text.unobserve(sub)
    prefix = len(("header line\n" * 50 + "progress ").encode())
    # "progress 10%" -> "progress 20%": only the differing character is replaced
    assert deltas[0] == [{"retain": prefix}, {"insert": "2"}, {"delete": 1}] or deltas[0] == [
        {"retain": prefix},
        {"delete": 1},
        {"insert": "2"},
    ]
    assert deltas[1] == [{"retain": prefix + 3}, {"insert": "\n"}]


# --------------------------------------------------------------------------------------------
# clear_output


def test_clear_output_now() -> None:
    writer = running_writer()
    writer.handle(stream("old"))
    writer.flush()
    writer.handle(msg("clear_output", wait=False))
    writer.flush()
    assert len(outputs(writer.doc)) == 0
    writer.handle(stream("new"))
    writer.flush()
    assert texts(writer.doc) == ["new"]


def test_clear_output_wait_clears_on_next_output() -> None:
    writer = running_writer()
    writer.handle(stream("old"))
    writer.flush()
    writer.handle(msg("clear_output", wait=True))
    writer.flush()
    assert texts(writer.doc) == ["old"]  # nothing arrived yet: still shown
    writer.handle(msg("display_data", data={"text/plain": "new"}, metadata={}, transient={}))
    writer.flush()
    assert outputs_to_nbformat(writer.doc) == [
        {"output_type": "display_data", "data": {"text/plain": "new"}, "metadata": {}}
    ]


def test_clear_output_wait_then_finish_keeps_outputs() -> None:
    writer = running_writer()
    writer.handle(stream("kept"))
    writer.handle(msg("clear_output", wait=True))
    writer.finish("ok", 1)
    assert texts(writer.doc) == ["kept"]
    assert state(writer.doc)["execution_state"] == "idle"


def test_clear_inside_one_flush_drops_buffered_outputs() -> None:
    doc: Doc[Any] = Doc()
    writer = running_writer(doc)
    remote = Remote(doc)
    for i in range(1000):
        writer.handle(msg("clear_output", wait=True))
        writer.handle(stream(f"frame {i}\n"))
    writer.flush()
    assert texts(doc) == ["frame 999\n"]
    assert len(remote.updates) == 1
    assert len(remote.updates[0]) < 200


# --------------------------------------------------------------------------------------------
# displays


def display(display_id: str, value: str, msg_type: str = "display_data") -> dict[str, Any]:
    return msg(
        msg_type,
        data={"text/plain": value},
        metadata={"n": 1},
        transient={"display_id": display_id},
    )


def test_update_display_data_across_cells_in_place() -> None:
    registry = DisplayRegistry()
    doc_a: Doc[Any] = Doc()
    doc_b: Doc[Any] = Doc()
    remote_a = Remote(doc_a)
    writer_a = running_writer(doc_a, display_registry=registry)
    writer_a.handle(display("d1", "first"))
    writer_a.handle(stream("between"))
    writer_a.handle(display("d1", "second copy"))
    writer_a.handle(display("other", "untouched"))
    writer_a.finish("ok", 1)
    assert registry.count("d1") == 2

    events: list[Any] = []
    remote_outputs = outputs(remote_a.doc)
    sub = remote_outputs.observe_deep(lambda evs: events.extend(evs))
    writer_b = running_writer(doc_b, display_registry=registry)
    writer_b.handle(msg("update_display_data", data={"text/plain": "updated"}, metadata={},
                        transient={"display_id": "d1"}))  # fmt: skip
    writer_b.flush()
    remote_outputs.unobserve(sub)
    result = outputs_to_nbformat(doc_a)
    assert [o.get("data") for o in result] == [
        {"text/plain": "updated"},
        None,
        {"text/plain": "updated"},
        {"text/plain": "untouched"},
    ]
    assert outputs_to_nbformat(remote_a.doc) == result
    # the remote saw key changes of the existing maps, never an array change
    assert events and all(type(e).__name__ == "MapEvent" for e in events)
    assert outputs(doc_a)[0]["display_id"] == "d1"
    # an update does not add outputs to the cell that sent it
    assert len(outputs(doc_b)) == 0

    # re-running cell A forgets its displays
    writer_a2 = running_writer(doc_a, display_registry=registry)
    assert "d1" not in registry
    writer_a2.handle(msg("update_display_data", data={"text/plain": "x"}, metadata={},
                         transient={"display_id": "d1"}))  # fmt: skip
    writer_a2.flush()
    assert len(outputs(doc_a)) == 0


def test_update_of_display_buffered_in_same_flush() -> None:
    writer = running_writer()
    writer.handle(display("d", "v0"))
    for i in range(1, 100):
        writer.handle(display("d", f"v{i}", "update_display_data"))
    writer.flush()
    assert outputs_to_nbformat(writer.doc)[0]["data"] == {"text/plain": "v99"}


def test_execute_result_error_and_state() -> None:
    writer = OutputWriter(Doc())
    writer.begin(executed_by="bob", queued=True)
    st = state(writer.doc)
    assert st["execution_state"] == "queued" and st["executed_by"] == "bob"
    assert st["queued_at"] is not None and st["status"] is None
    writer.start()
    st = state(writer.doc)
    assert st["execution_state"] == "running" and st["started_at"] >= st["queued_at"]
    writer.handle(msg("status", execution_state="busy"))
    writer.handle(msg("execute_input", code="1", execution_count=7))
    writer.flush()
    assert state(writer.doc)["execution_count"] == 7
    writer.handle(msg("execute_result", execution_count=7, data={"text/plain": "1"}, metadata={}))
    writer.handle(msg("error", ename="ValueError", evalue="bad", traceback=["l1", "l2"]))
    writer.finish("error", 7)
    st = state(writer.doc)
    assert st["execution_state"] == "idle" and st["status"] == "error"
    assert st["execution_count"] == 7 and type(st["execution_count"]) is int
    assert st["ended_at"] >= st["started_at"]
    assert outputs_to_nbformat(writer.doc) == [
        {
            "output_type": "execute_result",
            "execution_count": 7,
            "data": {"text/plain": "1"},
            "metadata": {},
        },
        {"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": ["l1", "l2"]},
    ]


def test_notice_is_an_output_but_not_nbformat() -> None:
    writer = running_writer()
    writer.handle(stream("a"))
    writer.notice("Kernel died", "error")
    writer.handle(stream("b"))
    writer.flush()
    assert outputs(writer.doc)[1].to_py() == {
        "output_type": "notice",
        "text": "Kernel died",
        "level": "error",
    }
    assert texts(writer.doc) == ["a", "b"]


# --------------------------------------------------------------------------------------------
# output cap


def test_output_cap_truncates_with_one_notice() -> None:
    writer = running_writer(max_output_bytes=1000)
    for _ in range(50):
        writer.handle(stream("x" * 99 + "\n"))
        writer.flush()
    writer.handle(msg("display_data", data={"text/plain": "dropped"}, metadata={}))
    writer.handle(msg("error", ename="E", evalue="kept", traceback=["tb"]))
    writer.finish("error")
    out = outputs(writer.doc).to_py() or []
    assert [o["output_type"] for o in out] == ["stream", "notice", "error"]
    assert len(out[0]["text"]) == 1000
    assert out[1]["text"].startswith("Output truncated: more than 0.001 MB")
    assert state(writer.doc)["truncated"] is True
    # a new execution starts afresh
    writer.start()
    assert state(writer.doc)["truncated"] is False
    writer.handle(stream("ok"))
    writer.flush()
    assert texts(writer.doc) == ["ok"]


def test_output_cap_counts_utf8_bytes() -> None:
    writer = running_writer(max_output_bytes=10)
    writer.handle(stream("ééééé😀"))  # 10 bytes fit, the emoji does not
    writer.flush()
    assert texts(writer.doc) == ["ééééé"]
    assert state(writer.doc)["truncated"] is True


# --------------------------------------------------------------------------------------------
# a remote client, batching


def test_remote_doc_receives_appends_not_replacements() -> None:
    doc: Doc[Any] = Doc()
    remote = Remote(doc)
    writer = running_writer(doc)
    writer.handle(stream("line 0\n"))
    writer.flush()
    remote_text = outputs(remote.doc)[0]["text"]
    assert isinstance(remote_text, Text)
    deltas: list[Any] = []
    array_events: list[Any] = []
    remote_text.observe(lambda event: deltas.append(event.delta))
    outputs(remote.doc).observe(lambda event: array_events.append(event))
    n_before = len(remote.updates)
    for i in range(1, 200):
        writer.handle(stream(f"line {i}\n"))
        writer.flush()
    assert len(remote.updates) == n_before + 199
    # each update carries one line, not the text so far
    assert max(len(u) for u in remote.updates[n_before:]) < 40
    assert len(deltas) == 199 and not array_events
    assert all(d[-1] == {"insert": f"line {i}\n"} for i, d in enumerate(deltas, 1))
    writer.handle(display("d", "v"))
    writer.finish("ok", 1)
    assert outputs(remote.doc).to_py() == outputs(doc).to_py()
    assert state(remote.doc) == state(doc)
    assert texts(remote.doc) == ["".join(f"line {i}\n" for i in range(200))]


def test_flood_of_tiny_messages_is_one_update() -> None:
    doc: Doc[Any] = Doc()
    writer = running_writer(doc)
    remote = Remote(doc)
    t0 = time.perf_counter()
    for i in range(100_000):
        writer.handle(stream(f"{i}\n"))
    handle_time = time.perf_counter() - t0
    writer.flush()
    assert len(remote.updates) == 1
    expected = "".join(f"{i}\n" for i in range(100_000))
    assert texts(doc) == texts(remote.doc) == [expected]
    assert len(remote.updates[0]) < len(expected) + 300  # the text and one new output map
    assert handle_time < 2.0  # about 1 µs per message; generous for slow CI
    writer.flush()  # nothing buffered: no update
    assert len(remote.updates) == 1


def test_progress_flood_keeps_only_the_last_frame() -> None:
    doc: Doc[Any] = Doc()
    writer = running_writer(doc)
    remote = Remote(doc)
    for i in range(100_000):
        writer.handle(stream(f"\r{i / 1000:6.2f}%"))
    writer.flush()
    assert texts(doc) == ["100.00%"]  # 99999 / 1000 rounds up
    assert len(remote.updates) == 1 and len(remote.updates[0]) < 200


# --------------------------------------------------------------------------------------------
# nbformat


def test_nbformat_round_trip() -> None:
    v4 = nbformat.v4
    cell_outputs = [
        v4.new_output("stream", name="stdout", text="hello\nworld\n"),
        v4.new_output("stream", name="stderr", text=["multi\n", "line"]),
        v4.new_output(
            "display_data",
            data={"text/plain": ["a\n", "b"], "application/json": {"x": [1, 2.5, None]}},
            metadata={"image/png": {"width": 400}},
        ),
        v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=3),
        v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                      traceback=["\x1b[0;31mTraceback\x1b[0m", "ZeroDivisionError"]),
    ]  # fmt: skip
    doc: Doc[Any] = Doc()
    seed_outputs(doc, cell_outputs, 3)
    assert state(doc)["execution_count"] == 3 and state(doc)["execution_state"] == "idle"
    out = outputs_to_nbformat(doc)
    assert out[1]["text"] == "multi\nline"
    assert out[2]["data"] == {"text/plain": "a\nb", "application/json": {"x": [1, 2.5, None]}}
    assert out[2]["metadata"] == {"image/png": {"width": 400}}
    nb = v4.new_notebook(
        cells=[v4.new_code_cell("1/0", execution_count=3, outputs=[nbformat.from_dict(o) for o in out])]
    )  # fmt: skip
    nbformat.validate(nb)
    # and back again: a second seed gives the same outputs
    doc2: Doc[Any] = Doc()
    seed_outputs(doc2, nb.cells[0].outputs, 3)
    assert outputs_to_nbformat(doc2) == out
    with pytest.raises(ValueError):
        seed_outputs(doc2, out, 3)
    # a writer continues a seeded stream as it stands
    doc3: Doc[Any] = Doc()
    seed_outputs(doc3, [v4.new_output("stream", name="stdout", text="a\nbc")], None)
    writer = OutputWriter(doc3)
    writer.handle(stream("\rX\n"))
    writer.flush()
    assert texts(doc3) == ["a\nXc\n"]


def test_notices_are_left_out_of_nbformat() -> None:
    writer = running_writer(max_output_bytes=3)
    writer.handle(stream("abcdef"))
    writer.finish("ok")
    out = outputs_to_nbformat(writer.doc)
    assert out == [{"output_type": "stream", "name": "stdout", "text": "abc"}]
    assert len(outputs(writer.doc)) == 2


# --------------------------------------------------------------------------------------------
# a real kernel


@pytest.fixture(scope="module")
async def kernel() -> AsyncIterator[Any]:
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        yield kc
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def execute(
    kc: Any, code: str, writer: OutputWriter, *, flush_every: float = 0.02
) -> list[dict[str, Any]]:
    """Run ``code``, feed its IOPub messages to ``writer`` (flushing on a timer)."""
    msg_id = kc.execute(code)
    writer.begin(executed_by="alice", queued=True)
    writer.start()
    seen: list[dict[str, Any]] = []
    last_flush = time.monotonic()
    while True:
        message = await kc.get_iopub_msg(timeout=60)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(message)
        writer.handle(message)
        if time.monotonic() - last_flush > flush_every:
            writer.flush()
            last_flush = time.monotonic()
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            break
    while True:
        reply = await kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    writer.finish(reply["content"]["status"], reply["content"].get("execution_count"))
    return seen


async def test_kernel_print_loop_and_progress(kernel: Any) -> None:
    doc: Doc[Any] = Doc()
    remote = Remote(doc)
    writer = OutputWriter(doc)
    code = (
        "import sys, time\n"
        "for i in range(2000):\n"
        "    print('line', i)\n"
        "    if i % 500 == 0: sys.stdout.flush(); time.sleep(0.03)\n"
        "for p in range(0, 101, 10):\n"
        "    print(f'\\r{p:3d}%', end='', flush=True)\n"
        "    time.sleep(0.005)\n"
        "print()\n"
    )
    await execute(kernel, code, writer)
    expected = "".join(f"line {i}\n" for i in range(2000)) + "100%\n"
    assert texts(doc) == [expected]
    assert texts(remote.doc) == [expected]
    st = state(doc)
    assert st["status"] == "ok" and type(st["execution_count"]) is int


async def test_kernel_clear_output_wait(kernel: Any) -> None:
    writer = OutputWriter(Doc())
    code = (
        "from IPython.display import clear_output\n"
        "import time\n"
        "for i in range(5):\n"
        "    clear_output(wait=True)\n"
        "    print('frame', i)\n"
        "    time.sleep(0.03)\n"
        "clear_output(wait=True)\n"
    )
    await execute(kernel, code, writer)
    # the last clear_output(wait=True) had nothing after it: the last frame stays
    assert texts(writer.doc) == ["frame 4\n"]


async def test_kernel_display_and_update(kernel: Any) -> None:
    registry = DisplayRegistry()
    doc_a: Doc[Any] = Doc()
    doc_b: Doc[Any] = Doc()
    writer_a = OutputWriter(doc_a, display_registry=registry)
    await execute(
        kernel,
        "from IPython.display import display\n"
        "h = display('initial', display_id=True)\n"
        "h.update('second')\n",
        writer_a,
    )
    out = outputs_to_nbformat(doc_a)
    assert out == [
        {"output_type": "display_data", "data": {"text/plain": "'second'"}, "metadata": {}}
    ]
    writer_b = OutputWriter(doc_b, display_registry=registry)
    await execute(kernel, "h.update('from another cell')", writer_b)
    assert outputs_to_nbformat(doc_a)[0]["data"] == {"text/plain": "'from another cell'"}
    assert outputs_to_nbformat(doc_b) == []


async def test_kernel_exception(kernel: Any) -> None:
    writer = OutputWriter(Doc())
    await execute(kernel, "print('before')\n1/0\n", writer)
    out = outputs_to_nbformat(writer.doc)
    assert out[0] == {"output_type": "stream", "name": "stdout", "text": "before\n"}
    assert out[1]["output_type"] == "error"
    assert out[1]["ename"] == "ZeroDivisionError"
    assert "division by zero" in "\n".join(out[1]["traceback"])
    assert state(writer.doc)["status"] == "error"


async def test_kernel_big_output_past_cap(kernel: Any) -> None:
    doc: Doc[Any] = Doc()
    remote = Remote(doc)
    writer = OutputWriter(doc, max_output_bytes=50_000)
    await execute(kernel, "for i in range(20000):\n    print('x' * 60)\n", writer)
    out = outputs(doc).to_py() or []
    assert [o["output_type"] for o in out] == ["stream", "notice"]
    assert len(out[0]["text"]) == 50_000
    assert "Output truncated" in out[1]["text"]
    assert state(doc)["truncated"] is True and state(doc)["status"] == "ok"
    assert outputs(remote.doc).to_py() == out
