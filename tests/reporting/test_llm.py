"""The optional LLM rewrite against a real HTTP server on localhost, and the fact check."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from radvlsm.reporting.batch import ReportJob, ReportSettings, run_reports
from radvlsm.reporting.llm import (
    ENV_KEY,
    ENV_MODEL,
    ENV_URL,
    LlmClient,
    LlmConfig,
    LlmRewriter,
    check_prose,
    extract_numbers,
    extract_terms,
)
from radvlsm.reporting.records import ReportRecord

KEY = "sk-test-7f3a9c1e5b2d4680SECRET"

TEMPLATE = (
    "One lesion was segmented. The lesion area is 132.4 mm². The longest diameter is 14.2 mm and the largest "
    "extent perpendicular to it is 11.8 mm. The border irregularity index is 0.07 (0 for a convex outline). "
    "The lesion is asymmetric about one of its two principal axes (asymmetry score 1 of 2). Dermoscopic colours "
    "found: light-brown and dark-brown (two colours of the six assessed). The segmentation's reliability "
    "estimate is 0.91 (0 to 1). The diagnosis model's most likely class is melanoma (probability 72%). The "
    "probability of malignancy is 72%."
)


def faithful(template: str) -> str:
    """A rewording that keeps every fact (what a well-behaved model answers)."""
    return (template.replace("One lesion was segmented. ", "A single lesion was segmented, ")
            .replace("The lesion area is", "covering")
            .replace("The longest diameter is", "It measures")
            .replace("and the largest extent perpendicular to it is", "by")
            .replace("Dermoscopic colours found:", "It shows")
            .replace("(two colours of the six assessed)", ""))


@dataclass
class ChatServer:
    """A chat-completions endpoint on localhost whose behaviour a test sets with ``mode``."""

    mode: str = "faithful"
    requests: list[dict] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    state = ChatServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep the test output clean
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            state.requests.append({"path": self.path, "body": body})
            state.auth.append(self.headers.get("Authorization", ""))
            template = body["messages"][-1]["content"]
            if state.mode == "timeout":
                time.sleep(1.5)
            if state.mode == "http_error":
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b"internal error")
                return
            if state.mode == "garbage":
                payload = b"\x00\xffnot json at all{"
            else:
                prose = {
                    "faithful": faithful(template),
                    "invented_size": faithful(template).replace("14.2 mm", "18.5 mm"),
                    "extra_finding": faithful(template) + " A second lesion is seen on the left side.",
                    "echo_key": faithful(template) + f" (key {KEY})",
                    "timeout": faithful(template),
                }[state.mode]
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": prose}}]}).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout case)
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _rewriter(url: str, timeout: float = 5.0) -> LlmRewriter:
    return LlmRewriter(LlmClient(LlmConfig(url=url, model="test-model", api_key=KEY, timeout_s=timeout)))


# ------------------------------------------------------------------------------------------- configuration

def test_nothing_is_configured_by_default() -> None:
    assert LlmConfig.resolve(environ={}) is None


def test_configuration_from_the_environment_hides_the_key() -> None:
    cfg = LlmConfig.resolve(environ={ENV_URL: "http://user:pw@localhost:8000/v1?token=abc", ENV_MODEL: "m",
                                     ENV_KEY: KEY})
    assert cfg is not None and cfg.api_key == KEY
    assert KEY not in repr(cfg)
    assert cfg.endpoint == "http://localhost:8000/v1/chat/completions"
    with pytest.raises(ValueError, match="both a URL and a model"):
        LlmConfig.resolve(environ={ENV_URL: "http://localhost"})
    with pytest.raises(ValueError, match="http"):
        LlmConfig.resolve(url="file:///etc/passwd", model="m", environ={})


# ------------------------------------------------------------------------------------------- fact check

def test_extraction_of_numbers_units_and_terms() -> None:
    nums = {(n.value, n.unit) for n in extract_numbers("It measures 14.2 mm by 11 mm, 132.4 mm², -650 HU, 72%, "
                                                       "two colours, 6-8 mm")}
    assert {(14.2, "mm"), (11.0, "mm"), (132.4, "mm2"), (-650.0, "hu"), (72.0, "%"), (2.0, "count:colour"),
            (6.0, ""), (8.0, "mm")} <= nums
    assert extract_terms("margin is not circumscribed, shape oval") == {"not circumscribed", "oval"}
    assert extract_terms("a light brown and blue-grey area") == {"light-brown", "blue-gray"}


def test_faithful_prose_passes() -> None:
    assert check_prose(faithful(TEMPLATE), TEMPLATE) is None
    assert check_prose(faithful(TEMPLATE).replace("14.2 mm", "14 mm"), TEMPLATE) is None  # a rounding


@pytest.mark.parametrize(("change", "why"), [
    (("14.2 mm", "18.5 mm"), "18.5 mm"),
    (("14.2 mm", "15 mm"), "15 mm"),  # not a rounding of 14.2
    (("14.2 mm", "1.42 cm"), "cm"),
    (("72%", "0.72"), "0.72"),
    (("light-brown and dark-brown", "light-brown, dark-brown and black"), "black"),
    (("asymmetric about one", "symmetric about one"), "symmetric"),
    (("melanoma (probability", "benign nevus (probability"), "benign"),
    (("One lesion", "Two lesions"), "two"),
    (("One lesion was", "3 lesions were"), "3"),
])
def test_prose_that_adds_or_changes_a_fact_is_rejected(change: tuple[str, str], why: str) -> None:
    prose = TEMPLATE.replace(*change)
    reason = check_prose(prose, TEMPLATE)
    assert reason is not None and why in reason


@pytest.mark.parametrize(("prose", "why"), [
    ("One lesion was segmented. There is no malignancy; the lesion is not melanoma.", "denies"),
    ("Findings unremarkable. One lesion was segmented, nothing further to add.", "denies"),
    ("One lesion was segmented; the lesion area is 132.4 mm² and its longest diameter 14.2 mm.", "leaves out"),
])
def test_prose_that_denies_or_drops_the_diagnosis_is_rejected(prose: str, why: str) -> None:
    reason = check_prose(prose, TEMPLATE)
    assert reason is not None and why in reason, reason


def test_laterality_and_location_are_rejected() -> None:
    assert "left" in check_prose(TEMPLATE + " The lesion is on the left.", TEMPLATE)
    assert "location" in check_prose(TEMPLATE + " It lies in the upper outer quadrant.", TEMPLATE)


def test_negated_descriptors_cannot_flip() -> None:
    t = "By the BI-RADS ultrasound lexicon the mass shape is irregular, its orientation is not parallel and its " \
        "margin is not circumscribed."
    assert check_prose(t.replace("not circumscribed", "circumscribed"), t) is not None
    assert check_prose(t.replace("not parallel", "parallel"), t) is not None
    assert check_prose("The mass is irregular in shape, not parallel in orientation, with a margin that is not "
                       "circumscribed.", t) is None


def test_empty_long_and_key_bearing_prose_is_rejected() -> None:
    assert check_prose("", TEMPLATE) is not None
    assert check_prose(TEMPLATE * 5, TEMPLATE) is not None
    assert "API key" in check_prose(TEMPLATE + " " + KEY, TEMPLATE, KEY)


# ------------------------------------------------------------------------------------------- the server

def test_faithful_prose_is_accepted(chat_server: ChatServer) -> None:
    prose, outcome = _rewriter(chat_server.url).rewrite("c1", TEMPLATE)
    assert outcome.status == "accepted" and outcome.model == "test-model"
    assert prose == faithful(TEMPLATE)
    req = chat_server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["model"] == "test-model" and req["body"]["messages"][-1]["content"] == TEMPLATE
    assert chat_server.auth == [f"Bearer {KEY}"]


@pytest.mark.parametrize(("mode", "status", "reason"), [
    ("invented_size", "rejected", "18.5 mm"),
    ("extra_finding", "rejected", "left"),
    ("echo_key", "rejected", "API key"),
    ("garbage", "failed", "malformed response"),
    ("http_error", "failed", "HTTP 500"),
    ("timeout", "failed", "no answer within"),
])
def test_bad_answers_leave_the_template(chat_server: ChatServer, caplog, mode: str, status: str,
                                        reason: str) -> None:
    chat_server.mode = mode
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        prose, outcome = _rewriter(chat_server.url, timeout=0.3).rewrite("c1", TEMPLATE)
    assert time.perf_counter() - t0 < 1.4  # the timeout holds
    assert prose is None
    assert outcome.status == status and reason in (outcome.reason or "")
    assert reason in caplog.text
    assert len(chat_server.requests) <= 1  # no retries
    assert KEY not in caplog.text and KEY not in (outcome.reason or "")


def test_unreachable_endpoint_stops_after_repeated_failures(caplog) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rw = _rewriter(f"http://127.0.0.1:{port}/v1", timeout=0.5)
    outcomes = [rw.rewrite(f"c{i}", TEMPLATE)[1].status for i in range(5)]
    assert outcomes == ["failed", "failed", "failed", "skipped", "skipped"]


def test_batch_with_llm_never_writes_or_logs_the_key(chat_server: ChatServer, tmp_path: Path, caplog,
                                                     disc, to_rgb) -> None:
    from radvlsm.io import write_png_image, write_png_mask

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    m = disc((120, 160), 40)
    rgb = np.empty((120, 160, 3), np.uint8)
    rgb[:] = to_rgb((72.0, 14.0, 20.0))
    rgb[m] = to_rgb((38.0, 22.0, 22.0))
    jobs = []
    for cid in ("a1", "a2", "a3"):
        write_png_image(images / f"{cid}.png", rgb)
        write_png_mask(masks / f"{cid}.png", m)
        jobs.append(ReportJob(cid, images / f"{cid}.png", masks / f"{cid}.png"))
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG):
        chat_server.mode = "faithful"
        run_reports(jobs[:1], out, settings=ReportSettings(modality="dermoscopy"), llm=_rewriter(chat_server.url))
        chat_server.mode = "echo_key"
        summary = run_reports(jobs, out, settings=ReportSettings(modality="dermoscopy"),
                              llm=_rewriter(chat_server.url))
    assert summary.written == 2 and summary.skipped == 1
    assert summary.llm == {"rejected": 2}
    accepted = ReportRecord.from_json((out / "reports" / "a1.json").read_text(encoding="utf-8"))
    assert accepted.llm.status == "accepted" and accepted.prose is not None
    assert accepted.prose in (out / "reports" / "a1.html").read_text(encoding="utf-8").replace("&#x27;", "'")
    rejected = ReportRecord.from_json((out / "reports" / "a2.json").read_text(encoding="utf-8"))
    assert rejected.prose is None and rejected.llm.status == "rejected" and "API key" in rejected.llm.reason
    assert rejected.narrative == rejected.template_text
    for f in out.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    assert KEY not in caplog.text
    assert all(a == f"Bearer {KEY}" for a in chat_server.auth)
