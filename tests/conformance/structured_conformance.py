"""Structured outputs of zeta-gateway (constrained decoding), checked with the official `openai` client
and validated with `jsonschema`.

Usage: structured_conformance.py BASE_URL   (the gateway's /v1 root)

The Rust test `tests/e2e/structured_outputs.rs` starts the real daemon and gateway and runs this
script against them. Models it expects:
  smollm2-135m   the embedded SmolLM2
  tiny-qwen      a tiny random Qwen-style model: it writes anything, so only the grammar keeps
                 its output in shape

Each check is a function named check_*; all run, failures are reported together, and the exit
status is the number of failures (0 = all passed).
"""

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai

from checks import run

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/v1"
client = openai.OpenAI(base_url=BASE, api_key="unused", max_retries=0, timeout=300)
SMOL = "smollm2-135m"

# Nested objects, enums, arrays, required and optional fields, bounded so that every sample can
# finish within its token budget.
ORDER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0, "maximum": 9999},
        "status": {"enum": ["pending", "shipped", "delivered"]},
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 12},
                "vip": {"type": "boolean"},
            },
            "required": ["name", "vip"],
            "additionalProperties": False,
        },
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
                    "qty": {"type": "integer", "minimum": 1, "maximum": 99},
                },
                "required": ["sku", "qty"],
                "additionalProperties": False,
            },
        },
        "note": {"type": "string", "maxLength": 8},
    },
    "required": ["id", "status", "customer", "items"],
    "additionalProperties": False,
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 150}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def person_format():
    return {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}


def check_json_schema_chat():
    c = client.chat.completions.create(model=SMOL, max_tokens=48, temperature=0, response_format=person_format(),
                                       messages=[{"role": "user", "content": "Invent a person. Answer in JSON."}])
    assert c.choices[0].finish_reason == "stop", c
    jsonschema.validate(json.loads(c.choices[0].message.content), PERSON)
    # Streamed: the same text in pieces.
    chunks = client.chat.completions.create(model=SMOL, max_tokens=48, temperature=0, response_format=person_format(),
                                            stream=True,
                                            messages=[{"role": "user", "content": "Invent a person. Answer in JSON."}])
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == c.choices[0].message.content, (text, c.choices[0].message.content)


def check_json_object_and_free_text_differ():
    messages = [{"role": "user", "content": "Say hello."}]
    free = client.chat.completions.create(model=SMOL, max_tokens=16, temperature=0, messages=messages)
    obj = client.chat.completions.create(model=SMOL, max_tokens=64, temperature=0, messages=messages,
                                         response_format={"type": "json_object"})
    assert not free.choices[0].message.content.lstrip().startswith("{"), free
    assert obj.choices[0].finish_reason == "stop", obj
    assert isinstance(json.loads(obj.choices[0].message.content), dict), obj.choices[0].message.content


def check_responses_text_format():
    r = client.responses.create(model=SMOL, input="Invent a person. Answer in JSON.", temperature=0, max_output_tokens=48,
                                text={"format": {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}})
    assert r.status == "completed", r
    jsonschema.validate(json.loads(r.output_text), PERSON)
    assert r.text.format.type == "json_schema", r.text
    # The SDK's parse helper reads the output as the schema's type.
    parsed = client.responses.parse(model=SMOL, input="Invent a person.", temperature=0, max_output_tokens=48,
                                    text_format=_person_model())
    assert parsed.output_parsed.age >= 0, parsed


def _person_model():
    import pydantic

    class Person(pydantic.BaseModel):
        # Bounded: an unbounded integer lets a small model write digits until the token limit.
        name: str = pydantic.Field(max_length=20)
        age: int = pydantic.Field(ge=0, le=150)

    return Person


def check_hundred_seeded_samples_validate():
    # A random model at temperature 1, sixteen at a time (one batch), each with its own seed;
    # a free request runs in the same batches.
    def sample(seed):
        c = client.chat.completions.create(model="tiny-qwen", max_tokens=400, temperature=1.0, seed=seed,
                                           response_format={"type": "json_schema",
                                                            "json_schema": {"name": "order", "schema": ORDER}},
                                           messages=[{"role": "user", "content": "An order, please."}])
        return c.choices[0]

    def free():
        return client.chat.completions.create(model="tiny-qwen", max_tokens=200, temperature=1.0, seed=7,
                                              messages=[{"role": "user", "content": "Anything."}]).choices[0]

    with ThreadPoolExecutor(17) as pool:
        unconstrained = pool.submit(free)
        choices = list(pool.map(sample, range(100)))
        unconstrained = unconstrained.result()
    failures = []
    for seed, ch in enumerate(choices):
        try:
            assert ch.finish_reason == "stop", ch.finish_reason
            jsonschema.validate(json.loads(ch.message.content), ORDER)
        except Exception as e:  # collect them all, to report how many
            failures.append((seed, repr(e)[:200], ch.message.content[:200]))
    assert not failures, f"{len(failures)}/100 invalid: {failures[:3]}"
    assert len({ch.message.content for ch in choices}) > 50, "seeds give different samples"
    assert unconstrained.message.content, unconstrained
    # The same seed gives the same sample, alone or batched.
    again = sample(3)
    assert again.message.content == choices[3].message.content, (again.message.content, choices[3].message.content)


TOOLS = [
    {"type": "function", "function": {"name": "book", "parameters": {
        "type": "object",
        "properties": {"city": {"enum": ["Paris", "Rome", "Oslo"]}, "nights": {"type": "integer", "minimum": 1, "maximum": 9},
                       "guests": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 6}}},
        "required": ["city", "nights"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "cancel", "parameters": {
        "type": "object", "properties": {"ref": {"type": "string", "pattern": "^[0-9]{4}$"}},
        "required": ["ref"], "additionalProperties": False}}},
]


def check_forced_tool_calls_validate():
    # A random model cannot write a tool call by itself: forced calls come out whole and valid
    # under their function's schema, for a named function and for "required" (either tool).
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}

    def call(seed):
        choice = {"type": "function", "function": {"name": "book"}} if seed % 2 else "required"
        c = client.chat.completions.create(model="tiny-qwen", max_tokens=200, temperature=1.0, seed=seed, tools=TOOLS,
                                           tool_choice=choice, messages=[{"role": "user", "content": "Book it."}])
        return seed, c.choices[0]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(24)))
    for seed, ch in results:
        assert ch.finish_reason == "tool_calls" and len(ch.message.tool_calls) == 1, (seed, ch)
        f = ch.message.tool_calls[0].function
        if seed % 2:
            assert f.name == "book", (seed, f)
        jsonschema.validate(json.loads(f.arguments), schemas[f.name])


def check_strict_tools_validate_under_auto():
    # A random model nudged towards calling (a logit bias on `<tool_call>`): with strict tools
    # every call it makes validates; the same requests without `strict` make no valid call.
    import urllib.request

    body = json.dumps({"model": "tiny-qwen", "text": "<tool_call>"}).encode()
    req = urllib.request.Request(BASE.removesuffix("/v1") + "/v1/tokenize", body, {"Content-Type": "application/json"})
    ids = json.loads(urllib.request.urlopen(req).read())["ids"]
    assert len(ids) == 1, ids
    schema = TOOLS[0]["function"]["parameters"]

    def ask(seed, strict):
        tool = {"type": "function", "function": dict(TOOLS[0]["function"], strict=strict)}
        return client.chat.completions.create(model="tiny-qwen", max_tokens=256, temperature=1.0, seed=seed, tools=[tool],
                                              logit_bias={str(ids[0]): 8}, messages=[{"role": "user", "content": "Hi"}]).choices[0]

    with ThreadPoolExecutor(8) as pool:
        strict = list(pool.map(lambda s: ask(s, True), range(24)))
        loose = list(pool.map(lambda s: ask(s, False), range(24)))
    # An answer cut by max_tokens may end inside a call: only finished answers are judged.
    done = [ch for ch in strict if ch.finish_reason != "length"]
    calls = [c for ch in done for c in (ch.message.tool_calls or [])]
    assert len(calls) >= 6, f"only {len(calls)} calls in {len(done)} finished answers"
    assert all(ch.finish_reason == "tool_calls" for ch in done if ch.message.tool_calls), done
    for c in calls:
        assert c.function.name == "book", c
        jsonschema.validate(json.loads(c.function.arguments), schema)
    def valid(c):
        try:
            jsonschema.validate(json.loads(c.function.arguments), schema)
            return c.function.name == "book"
        except Exception:
            return False
    loose_done = [ch for ch in loose if ch.finish_reason != "length"]
    assert not [c for ch in loose_done for c in (ch.message.tool_calls or []) if valid(c)], "a random model calls validly only under the grammar"


def check_grammar_extension():
    grammar = 'start: answer\nanswer: "yes" | "no"'
    for seed in range(4):
        c = client.chat.completions.create(model="tiny-qwen", max_tokens=8, temperature=1.0, seed=seed,
                                           messages=[{"role": "user", "content": "Yes or no?"}],
                                           extra_body={"grammar": grammar})
        assert c.choices[0].message.content in ("yes", "no") and c.choices[0].finish_reason == "stop", c
    t = client.completions.create(model="tiny-qwen", prompt="Digits:", max_tokens=12, temperature=1.0, seed=1,
                                  extra_body={"grammar": 'start: /[0-9]{4}/'})
    assert len(t.choices[0].text) == 4 and t.choices[0].text.isdigit(), t.choices[0].text


def check_bad_schemas_name_the_field():
    def refused(param, **kw):
        try:
            client.chat.completions.create(model=SMOL, max_tokens=4, messages=[{"role": "user", "content": "x"}], **kw)
        except openai.BadRequestError as e:
            assert e.status_code == 400 and e.body["param"] == param, (param, e.body)
            return e.body["message"]
        raise AssertionError(f"{kw} must be refused")

    refused("response_format.json_schema.schema", response_format={"type": "json_schema", "json_schema": {"name": "x"}})
    refused("response_format.type", response_format={"type": "yaml"})
    msg = refused("response_format", response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}}})
    assert "missing" in msg and "at #/properties/a" in msg, msg
    msg = refused("response_format", response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "properties": {"a": {"type": "array", "items": {"not": {}}}}}}})
    assert "at #/properties/a/items" in msg and "not" in msg, msg
    refused("response_format", response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "strange"}}})
    refused("grammar", extra_body={"grammar": "start: ("})
    refused("grammar", response_format={"type": "json_object"}, extra_body={"grammar": 'start: "a"'})
    # A tool schema the server compiles (strict, or a forced call's) is named as the client's
    # tool, not as the grammar the server built from it.
    good = {"type": "function", "function": {"name": "ok", "parameters": {"type": "object"}}}
    bad = {"type": "function", "function": {"name": "bad", "parameters": {
        "type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}}}
    strict = {"type": "function", "function": dict(bad["function"], strict=True)}
    for tools, choice in [([good, strict], "auto"), ([good, bad], {"type": "function", "function": {"name": "bad"}})]:
        try:
            client.chat.completions.create(model="tiny-qwen", max_tokens=4, tools=tools, tool_choice=choice,
                                           messages=[{"role": "user", "content": "x"}])
            raise AssertionError(f"{choice}: a schema that does not compile must be refused")
        except openai.BadRequestError as e:
            assert e.body["param"] == "tools[1].function.parameters", (choice, e.body)
            assert "missing" in e.body["message"] and "at #/properties/a" in e.body["message"], e.body
            assert "%json" not in e.body["message"], e.body


if __name__ == "__main__":
    run(globals())
