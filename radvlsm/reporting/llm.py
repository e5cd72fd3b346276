"""Optional rewriting of the template as prose by an OpenAI-compatible chat endpoint, and its fact check.

Nothing is contacted unless an endpoint URL and a model are configured (options, or the environment variables
``RADVLSM_LLM_URL``, ``RADVLSM_LLM_MODEL``, ``RADVLSM_LLM_API_KEY``). The client is the standard library's
``urllib.request``: one POST to ``<url>/chat/completions`` per case, with a timeout and no retries; after
:data:`MAX_CONSECUTIVE_FAILURES` failed calls in a row the batch stops calling the endpoint.

The API key travels only in the ``Authorization`` header. It is never logged, never written to a report, and
any text that would be logged or written (a reason, the prose) has it replaced by ``***``.

**Fact check** (:func:`check_prose`): the prose may only restate the template. It is rejected, and the
template stands, when

1. a number it states (digits or the words zero-twelve, with its unit: mm, mm², mm³, px, px², %, HU, or none)
   is not a rounding of a number the template states with the same unit (so ``4 mm`` may restate ``4.2 mm``,
   but ``5 mm``, ``0.42 cm`` or ``42%`` for ``0.42`` are rejected);
2. it names a finding term the template does not (colours, asymmetry, BI-RADS shape / orientation / margin
   terms, CT composition terms, diagnosis words such as melanoma, benign, malignant), a laterality or
   location (left, right, bilateral, upper, lower, quadrant, o'clock …), or turns a stated term into its
   opposite (``circumscribed`` for ``not circumscribed``, ``symmetric`` for ``asymmetric``);
3. it uses a unit the template does not (``cm``, ``inch`` …);
4. it is empty, much longer than the template, or contains the API key.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

from radvlsm.reporting.records import LlmOutcome

log = logging.getLogger(__name__)

ENV_URL = "RADVLSM_LLM_URL"
ENV_MODEL = "RADVLSM_LLM_MODEL"
ENV_KEY = "RADVLSM_LLM_API_KEY"
DEFAULT_TIMEOUT_S = 60.0
MAX_CONSECUTIVE_FAILURES = 3
MAX_RESPONSE_BYTES = 1_000_000

SYSTEM_PROMPT = (
    "You rewrite automatically measured medical image findings as concise, plain clinical prose for a report. "
    "Use only the facts in the text you are given. Do not add, infer or change any finding, number, unit, "
    "laterality, location or diagnosis; keep every number and unit exactly as written; do not convert units. "
    "Do not mention anything the text does not state. Answer with the prose only, in one paragraph."
)


class LlmError(Exception):
    """The endpoint gave no usable answer (HTTP error, timeout, malformed response)."""


@dataclass(frozen=True)
class LlmConfig:
    """Where the chat endpoint is. ``api_key`` is left out of ``repr``."""

    url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        environ: Mapping[str, str] | None = None,
    ) -> LlmConfig | None:
        """The configuration from the arguments, else the environment; ``None`` (no LLM) unless both a URL and
        a model are given. Raises ``ValueError`` for a URL that is not http(s) or a model without a URL."""
        env = os.environ if environ is None else environ
        url = (url or env.get(ENV_URL) or "").strip()
        model = (model or env.get(ENV_MODEL) or "").strip()
        key = (api_key or env.get(ENV_KEY) or "").strip() or None
        if not url and not model:
            return None
        if not url or not model:
            raise ValueError(f"an LLM needs both a URL and a model ({ENV_URL}, {ENV_MODEL}); only "
                             f"{'the URL' if url else 'the model'} was given")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the LLM URL must be http(s)://host[:port]/path, got {sanitize_url(url)!r}")
        if timeout_s <= 0:
            raise ValueError("the LLM timeout must be positive")
        return cls(url=url, model=model, api_key=key, timeout_s=float(timeout_s))

    @property
    def endpoint(self) -> str:
        """The chat-completions URL, without credentials or query (safe to log and write)."""
        return sanitize_url(chat_url(self.url))


def chat_url(url: str) -> str:
    """``url`` with ``/chat/completions`` appended to its path (unless it ends so already); query kept."""
    p = urllib.parse.urlsplit(url)
    path = p.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions"
    return urllib.parse.urlunsplit((p.scheme, p.netloc, path, p.query, p.fragment))


def sanitize_url(url: str) -> str:
    """``scheme://host[:port]/path``: user, password, query and fragment removed."""
    try:
        p = urllib.parse.urlsplit(url)
        host = p.hostname or ""
        port = f":{p.port}" if p.port else ""
    except ValueError:
        return "(invalid URL)"
    return urllib.parse.urlunsplit((p.scheme, host + port, p.path, "", ""))


def redact(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 4:
        return text.replace(secret, "***")
    return text


class LlmClient:
    """One chat endpoint. :meth:`rewrite` makes one request, no retries."""

    def __init__(self, config: LlmConfig) -> None:
        self.config = config

    def _safe(self, text: str) -> str:
        return redact(text, self.config.api_key)

    def rewrite(self, template: str) -> str:
        """The endpoint's prose for ``template``; raises :class:`LlmError` with a reason that holds no secret."""
        cfg = self.config
        body = json.dumps({
            "model": cfg.model,
            "temperature": 0,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": template}],
        }).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if cfg.api_key:
            headers["Authorization"] = f"Bearer {cfg.api_key}"
        req = urllib.request.Request(chat_url(cfg.url), data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=cfg.timeout_s) as resp:
                raw = resp.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise LlmError(f"HTTP {exc.code} {self._safe(str(exc.reason))[:100]}") from None
        except TimeoutError:
            raise LlmError(f"no answer within {cfg.timeout_s:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise LlmError(f"no answer within {cfg.timeout_s:g} s") from None
            raise LlmError(f"cannot reach the endpoint: {self._safe(str(reason))[:200]}") from None
        except (OSError, ValueError) as exc:
            raise LlmError(f"request failed: {self._safe(type(exc).__name__ + ': ' + str(exc))[:200]}") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise LlmError("response larger than 1 MB")
        try:
            data = json.loads(raw.decode("utf-8"))
            content = data["choices"][0]["message"]["content"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            raise LlmError(f"malformed response ({type(exc).__name__})") from None
        if not isinstance(content, str):
            raise LlmError("malformed response (content is not text)")
        return content.strip()


# -------------------------------------------------------------------------------------------------------
# Fact check
# -------------------------------------------------------------------------------------------------------

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "single": 1, "both": 2, "twice": 2,
}
_UNITS = (
    (r"mm\s*(?:²|\^?2\b)|square\s+millimet(?:er|re)s?", "mm2"),
    (r"mm\s*(?:³|\^?3\b)|cubic\s+millimet(?:er|re)s?|ml\b|millilit(?:er|re)s?", "mm3"),
    (r"mm\b|millimet(?:er|re)s?", "mm"),
    (r"cm\s*(?:²|³|\^?[23]\b)?|centimet(?:er|re)s?", "cm"),
    (r"px\s*(?:²|\^?2\b)|square\s+pixels?", "px2"),
    (r"px\b|pixels?\b", "px"),
    (r"%|per\s*cent|percent", "%"),
    (r"hu\b|hounsfield(?:\s+units?)?", "hu"),
    (r"in(?:ch|ches)\b", "inch"),
    (r"degrees?\b|°", "deg"),
)
_UNIT_RE = "|".join(f"(?:{p})" for p, _ in _UNITS)
_NUM_RE = re.compile(
    r"(?<![\w.])(?P<sign>[-−–])?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\d])"
    r"(?P<tail>(?:\s*(?:" + _UNIT_RE + r"))?)",
    re.IGNORECASE,
)

#: Finding terms, each with its spellings; longer phrases are matched (and removed) before shorter ones.
_TERMS: dict[str, tuple[str, ...]] = {
    "not circumscribed": ("not circumscribed", "non-circumscribed", "noncircumscribed", "uncircumscribed"),
    "not parallel": ("not parallel", "non-parallel", "nonparallel", "taller than wide", "taller-than-wide"),
    "wider than tall": ("wider than tall", "wider-than-tall"),
    "light-brown": ("light-brown", "light brown"),
    "dark-brown": ("dark-brown", "dark brown"),
    "blue-gray": ("blue-gray", "blue-grey", "blue gray", "blue grey", "bluish-gray", "bluish-grey", "blue-white",
                  "blue-whitish", "bluish"),
    "part-solid": ("part-solid", "part solid", "semi-solid", "subsolid"),
    "ground-glass": ("ground-glass", "ground glass"),
    "white": ("white", "whitish"),
    "red": ("red", "reddish", "pink", "pinkish", "erythema", "erythematous"),
    "brown": ("brown", "brownish", "tan"),
    "black": ("black", "blackish"),
    "blue": ("blue",),
    "gray": ("gray", "grey", "greyish", "grayish"),
    "yellow": ("yellow", "yellowish", "orange"),
    "asymmetric": ("asymmetric", "asymmetrical", "asymmetrically"),
    "symmetric": ("symmetric", "symmetrical", "symmetrically"),
    "circumscribed": ("circumscribed", "well-circumscribed", "well circumscribed"),
    "parallel": ("parallel",),
    "oval": ("oval", "ovoid", "elliptical", "ellipsoid"),
    "round": ("round", "rounded", "circular", "spherical"),
    "irregular": ("irregular", "irregularly"),
    "regular": ("regular", "regularly"),
    "smooth": ("smooth",),
    "well-defined": ("well-defined", "well defined", "ill-defined", "ill defined", "poorly defined"),
    "indistinct": ("indistinct",),
    "angular": ("angular",),
    "microlobulated": ("microlobulated", "micro-lobulated"),
    "lobulated": ("lobulated", "lobular", "lobulation"),
    "spiculated": ("spiculated", "spiculation", "spiculations", "spicules"),
    "solid": ("solid",),
    "calcified": ("calcified", "calcification", "calcifications"),
    "cavitation": ("cavitation", "cavitary", "cavitated"),
    "melanoma": ("melanoma", "melanomas"),
    "nevus": ("nevus", "naevus", "nevi", "naevi", "mole"),
    "atypical": ("atypical", "dysplastic"),
    "common": ("common",),
    "benign": ("benign",),
    "malignant": ("malignant", "malignancy", "cancer", "cancerous", "carcinoma", "metastasis", "metastatic",
                  "neoplasm", "neoplastic", "tumour", "tumor"),
    "suspicious": ("suspicious", "concerning", "worrisome"),
    "adenoma": ("adenoma", "adenomatous", "fibroadenoma", "cyst", "cystic", "lipoma", "hyperplastic"),
    "left": ("left", "left-sided"),
    "right": ("right", "right-sided"),
    "bilateral": ("bilateral", "bilaterally", "unilateral"),
    "location": ("upper", "lower", "medial", "lateral", "anterior", "posterior", "superior", "inferior",
                 "quadrant", "o'clock", "lobe", "apical", "basal", "proximal", "distal", "sigmoid", "rectum",
                 "rectal", "colon", "cecum", "caecum", "back", "trunk", "arm", "leg", "face", "scalp", "breast",
                 "lung"),
}
# Generic words a specific stated term makes true.
_IMPLIED = {
    "light-brown": ("brown",), "dark-brown": ("brown",), "blue-gray": ("blue", "gray"),
    "atypical": ("nevus",), "common": ("nevus",),
}
_SPELLINGS = sorted(((s, canon) for canon, spellings in _TERMS.items() for s in spellings),
                    key=lambda t: -len(t[0]))


def _normalise(text: str) -> str:
    return (text.replace("\u2212", "-").replace("\u2013", "-").replace("\u2011", "-").replace("’", "'")
            .replace("_", " ").lower())


def extract_terms(text: str) -> set[str]:
    """The finding terms a text names (canonical names of :data:`_TERMS`), longest phrases first."""
    t = _normalise(text)
    found: set[str] = set()
    for spelling, canon in _SPELLINGS:
        pattern = re.compile(r"(?<![\w-])" + re.escape(spelling) + r"(?![\w-])")
        if pattern.search(t):
            found.add(canon)
            t = pattern.sub(" ", t)
    return found


@dataclass(frozen=True)
class StatedNumber:
    value: float
    unit: str
    decimals: int
    text: str


def _unit_of(tail: str) -> str:
    tail = tail.strip().lower()
    if not tail:
        return ""
    for pattern, name in _UNITS:
        if re.fullmatch(pattern, tail, re.IGNORECASE):
            return name
    return "?"


_COUNTED = re.compile(r"\s+(?:[a-z-]+\s+){0,2}?(lesion|colou?r|ax[ie]s|component|region|nodule|polyp|mass)(?:e?s)?\b")


def _counted(t: str, end: int) -> str:
    """``count:<noun>`` when a count noun follows within two words of position ``end``, else ``""``."""
    m = _COUNTED.match(t, end)
    if m is None:
        return ""
    noun = m.group(1)
    noun = {"color": "colour", "axes": "axis", "axis": "axis"}.get(noun, noun)
    return f"count:{noun}"


def extract_numbers(text: str) -> list[StatedNumber]:
    """Numbers a text states, with their unit: a physical unit, ``count:<noun>`` for counted things (two
    lesions, one colour), or ``""``. Number words count as integers."""
    t = _normalise(text)
    out: list[StatedNumber] = []
    for m in _NUM_RE.finditer(t):
        raw = m.group("num").replace(",", "")
        value = float(raw)
        if m.group("sign"):
            value = -value
        decimals = len(raw.split(".")[1]) if "." in raw else 0
        unit = _unit_of(m.group("tail")) or _counted(t, m.end())
        out.append(StatedNumber(value, unit, decimals, m.group(0).strip()))
    for m in re.finditer(r"(?<![\w-])(" + "|".join(_NUMBER_WORDS) + r")(?![\w-])", t):
        out.append(StatedNumber(float(_NUMBER_WORDS[m.group(1)]), _counted(t, m.end()), 0, m.group(1)))
    return out


def _units_named(text: str) -> set[str]:
    t = _normalise(text)
    named = set()
    for pattern, name in _UNITS:
        if name in ("inch",):
            if re.search(r"(?<![\w])in(?:ch|ches)\b", t):
                named.add(name)
            continue
        if re.search(r"(?<![\w])(?:" + pattern + ")", t, re.IGNORECASE):
            named.add(name)
    return named


#: Words that deny or dismiss a finding: the prose may use each no more often than the template does.
_NEGATIONS = ("no", "not", "none", "without", "absent", "absence", "negative", "excluded", "ruled", "unremarkable",
              "normal", "neither", "nor", "never", "lacks", "lacking", "free")
#: Terms of a diagnosis: every one the template states must be stated by the prose too.
_DIAGNOSIS_TERMS = ("melanoma", "nevus", "atypical", "common", "benign", "malignant", "suspicious", "adenoma")


def _negations(text: str) -> dict[str, int]:
    words = re.findall(r"[a-z']+", _normalise(text))
    return {w: words.count(w) for w in _NEGATIONS if w in words} | {
        "n't": sum(w.endswith("n't") for w in words)}


def check_prose(prose: str, template: str, secret: str | None = None) -> str | None:
    """``None`` when ``prose`` states nothing beyond ``template``, else the reason it is rejected.

    Rejected: numbers, units or finding terms the template does not state; a word that denies or dismisses a
    finding ("no", "not", "unremarkable" …) used more often than in the template; a diagnosis term of the
    template ("melanoma", "malignant" …) left out.
    """
    text = prose.strip()
    if len(text) < 20:
        return "the prose is empty or too short"
    if len(text) > max(3 * len(template), 600):
        return f"the prose is {len(text)} characters long, much longer than the template ({len(template)})"
    if secret and len(secret) >= 4 and secret in text:
        return "the prose contains the API key"
    facts = extract_numbers(template)
    for n in extract_numbers(text):
        if n.unit == "?":
            return f"the prose states {n.text!r} with a unit the template does not use"
        tol = 0.5 * 10 ** (-n.decimals) + 1e-9

        def same_unit(fact: StatedNumber, n: StatedNumber = n) -> bool:
            # A bare number may restate a count ("the count is 2"); a counted or physical one needs its unit.
            return fact.unit == n.unit or (n.unit == "" and fact.unit.startswith("count:"))

        if not any(same_unit(f) and abs(f.value - n.value) <= tol for f in facts):
            unit_facts = [f.text for f in facts if f.unit == n.unit]
            if any(abs(f.value - n.value) <= tol for f in facts):
                return f"the prose states {n.text!r}, a number the template gives with another unit"
            hint = f" (the template states {', '.join(unit_facts[:4])})" if unit_facts else ""
            return f"the prose states {n.text!r}, which is not in the findings{hint}"
    extra_units = _units_named(text) - _units_named(template)
    if extra_units:
        return f"the prose uses a unit the findings do not: {', '.join(sorted(extra_units))}"
    allowed = extract_terms(template)
    for canon in list(allowed):
        allowed.update(_IMPLIED.get(canon, ()))
    stated = extract_terms(text)
    extra = sorted(stated - allowed)
    if extra:
        return f"the prose names a finding the template does not state: {', '.join(extra)}"
    template_negations = _negations(template)
    denied = sorted(w for w, n in _negations(text).items() if n > template_negations.get(w, 0))
    if denied:
        return f"the prose denies or dismisses something the template does not ({', '.join(denied)})"
    dropped = sorted(t for t in _DIAGNOSIS_TERMS if t in extract_terms(template) and t not in stated)
    if dropped:
        return f"the prose leaves out the diagnosis the template states ({', '.join(dropped)})"
    return None


@dataclass
class LlmRewriter:
    """Rewrites templates for a batch and keeps count of failures (after :data:`MAX_CONSECUTIVE_FAILURES`
    in a row, the endpoint is not called again in this batch)."""

    client: LlmClient
    consecutive_failures: int = 0

    @property
    def config(self) -> LlmConfig:
        return self.client.config

    def rewrite(self, case_id: str, template: str) -> tuple[str | None, LlmOutcome]:
        """``(prose or None, outcome)``; never raises for endpoint problems."""
        cfg = self.config
        base = {"model": cfg.model, "endpoint": cfg.endpoint}
        if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            return None, LlmOutcome("skipped", reason=f"the endpoint failed {self.consecutive_failures} times in "
                                    "a row; not called again in this run", **base)
        try:
            prose = self.client.rewrite(template)
        except LlmError as exc:
            self.consecutive_failures += 1
            reason = redact(str(exc), cfg.api_key)
            log.warning("%s: LLM rewrite failed (%s); the template text is used", case_id, reason)
            return None, LlmOutcome("failed", reason=reason, **base)
        self.consecutive_failures = 0
        problem = check_prose(prose, template, cfg.api_key)
        if problem is not None:
            reason = redact(problem, cfg.api_key)
            log.warning("%s: LLM prose rejected (%s); the template text is used", case_id, reason)
            return None, LlmOutcome("rejected", reason=reason, **base)
        return redact(prose, cfg.api_key), LlmOutcome("accepted", **base)


def not_configured() -> LlmOutcome:
    return LlmOutcome("not_configured")
