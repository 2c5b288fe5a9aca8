"""OpenAI API conformance of zeta-gateway, checked with the official `openai` Python client.

Usage: openai_conformance.py BASE_URL

The Rust test `tests/e2e/openai_conformance.rs` starts the real daemon and gateway and runs this
script against them. Models it expects (aliases in the daemon's config):
  smollm2-135m        the embedded SmolLM2 (chat, streaming, stop, length)
  tiny-qwen           a tiny random Qwen-style model with a tool-capable template
  scripted-tools      answers with one get_weather tool call (greedy)
  scripted-reasoning  answers "<think>...</think>" then text (greedy)
  scripted-harmony, scripted-harmony-tools
                      the same in gpt-oss's harmony format (analysis, then final or a call)
  scripted-phi4-tools a get_weather call in Phi-4-mini's <|tool_call|>[...]<|/tool_call|> form
Environment: TINY_QWEN_DIR, the tiny model's folder, for the reference prompt rendering.

Each check is a function named check_*; all run, failures are reported together, and the exit
status is the number of failures (0 = all passed).
"""

import json
import os
import sys

import urllib.error
import urllib.request

import openai

from checks import run

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/v1"
client = openai.OpenAI(base_url=BASE, api_key="unused", max_retries=0, timeout=120)
SMOL = "smollm2-135m"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}


def user(text):
    return [{"role": "user", "content": text}]


def check_models_list():
    ids = [m.id for m in client.models.list().data]
    for want in [SMOL, "tiny-qwen", "scripted-tools", "scripted-reasoning"]:
        assert want in ids, ids
    m = client.models.retrieve(SMOL)
    assert m.id == SMOL and m.object == "model", m
    try:
        client.models.retrieve("no-such-model")
        raise AssertionError("retrieving an unknown model should fail")
    except openai.NotFoundError as e:
        assert e.status_code == 404


def check_chat():
    r = client.chat.completions.create(model=SMOL, messages=user("What is the capital of France?"), temperature=0)
    c = r.choices[0]
    assert "Paris" in c.message.content, c.message.content
    assert c.message.role == "assistant" and c.finish_reason == "stop", c
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == SMOL, r
    u = r.usage
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens and u.completion_tokens > 0, u
    assert u.prompt_tokens_details is not None and u.prompt_tokens_details.cached_tokens >= 0, u


def check_streaming_matches_non_streaming():
    kw = dict(model=SMOL, messages=user("Name three colors."), temperature=0, max_tokens=20)
    full = client.chat.completions.create(**kw).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **kw))
    assert chunks[0].choices[0].delta.role == "assistant", chunks[0]
    assert len({c.id for c in chunks}) == 1, "one id for every chunk"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full, (text, full)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] in ("stop", "length") and all(r is None for r in reasons[:-1]), reasons
    assert all(c.usage is None for c in chunks), "no usage chunk unless asked"


def check_include_usage():
    # Greedy: at the default temperature the reply to "Hi" sometimes ended within 5 tokens.
    chunks = list(client.chat.completions.create(
        model=SMOL, messages=user("Hi"), max_tokens=5, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None, last
    reason = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    # The usage counts what was generated: all 5 when cut by the length, fewer when the model ended.
    if reason == "length":
        assert last.usage.completion_tokens == 5, (reason, last.usage)
    else:
        assert reason == "stop" and 0 < last.usage.completion_tokens < 5, (reason, last.usage)
    assert all(not c.usage for c in chunks[:-1])


def joined(logprobs):
    """The bytes of the tokens that log-probabilities cover."""
    return b"".join(bytes(t.bytes) for t in logprobs)


def covered(logprobs, text):
    """Asserts that the tokens of `logprobs` spell `text`, each starting within it."""
    answer, start = text.encode(), 0
    for t in logprobs:
        assert start < len(answer), ("a token past the answer", t, text)
        start += len(t.bytes)
    assert joined(logprobs).startswith(answer), (joined(logprobs), text)


def check_stop():
    r = client.chat.completions.create(
        model=SMOL, messages=user("What is the capital of France?"), temperature=0, stop=["Paris"], logprobs=True)
    c = r.choices[0]
    assert "Paris" not in c.message.content and c.finish_reason == "stop", c
    assert c.message.content.strip().startswith("The capital"), c.message.content
    # The log-probabilities cover the answer: each token's text starts in it (the last may run
    # on into the stop string cut from it, as " Paris" does), none lies wholly past the cut.
    covered(c.logprobs.content, c.message.content)
    # Streamed, no part of the stop string shows, even though " Paris" spans tokens.
    chunks = [ch for ch in client.chat.completions.create(
        model=SMOL, messages=user("What is the capital of France?"), temperature=0, stop=["Paris"], stream=True,
        logprobs=True) if ch.choices]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    assert text == c.message.content, (text, c.message.content)
    streamed = [t for ch in chunks if ch.choices[0].logprobs for t in ch.choices[0].logprobs.content]
    assert joined(streamed) == joined(c.logprobs.content), (joined(streamed), joined(c.logprobs.content))
    # The legacy shape: its offsets stay within the text.
    r = client.completions.create(model=SMOL, prompt="1, 2, 3, 4,", stop=["7, 8"], temperature=0, logprobs=1,
                                  max_tokens=16)
    lp = r.choices[0].logprobs
    assert r.choices[0].finish_reason == "stop" and "7" not in r.choices[0].text, r.choices[0]
    assert all(o < len(r.choices[0].text) for o in lp.text_offset), (lp.text_offset, r.choices[0].text)


def check_logprob_bytes_rebuild_characters_split_across_tokens():
    # Greedy SmolLM2 answers with emoji, each several byte-level tokens of part of a character.
    r = client.chat.completions.create(
        model=SMOL, messages=user("Reply with only three emoji: \U0001F60E\U0001F389\U0001F680"), max_tokens=12,
        temperature=0, logprobs=True, top_logprobs=2)
    text, lp = r.choices[0].message.content, r.choices[0].logprobs.content
    partial = [t for t in lp if bytes(t.bytes) != t.token.encode()]
    assert partial, ("the test needs tokens that are part of a character", text, lp)
    if "\ufffd" not in text:
        assert joined(lp) == text.encode(), (joined(lp), text)
    assert all(a.bytes for t in lp for a in t.top_logprobs), lp
    # The legacy shape counts characters: each offset is where its token's text starts.
    r = client.completions.create(model=SMOL, prompt="Emoji: \U0001F60E\U0001F389", max_tokens=6, temperature=0,
                                  logprobs=2)
    c = r.choices[0]
    offsets = c.logprobs.text_offset
    assert offsets == sorted(offsets) and offsets[0] == 0 and offsets[-1] < max(len(c.text), 1), (offsets, c.text)


def check_stream_chunks_carry_null_usage_when_asked():
    # OpenAI: with include_usage, every chunk has "usage", null on all but the last one.
    body = json.dumps({"model": SMOL, "messages": user("Hi"), "max_tokens": 3, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(BASE + "/chat/completions", data=body, headers={"content-type": "application/json"})
    events = [json.loads(line[6:]) for line in urllib.request.urlopen(req).read().decode().splitlines()
              if line.startswith("data: {")]
    assert all("usage" in e for e in events), events
    assert all(e["usage"] is None for e in events[:-1]) and events[-1]["usage"]["completion_tokens"] > 0, events


def check_length():
    r = client.chat.completions.create(model=SMOL, messages=user("Tell me a long story."), max_tokens=3)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3, r
    r = client.chat.completions.create(model=SMOL, messages=user("Tell me a long story."), max_completion_tokens=2)
    assert r.usage.completion_tokens == 2, r.usage


def check_errors():
    try:
        client.chat.completions.create(model=SMOL, messages=user("x"), temperature=3)
        raise AssertionError("temperature=3 must be refused")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and e.body["param"] == "temperature", e.body
    try:
        client.chat.completions.create(model="no-such-model", messages=user("x"))
        raise AssertionError("unknown model must be refused")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and e.body["code"] == "model_not_found", e.body
    try:
        client.chat.completions.create(model=SMOL, messages=[])
        raise AssertionError("empty messages must be refused")
    except openai.BadRequestError as e:
        assert e.body["param"] == "messages", e.body


def check_n_above_one_is_refused():
    try:
        client.chat.completions.create(model=SMOL, messages=user("x"), n=2)
        raise AssertionError("n=2 must be refused")
    except openai.BadRequestError as e:
        assert e.body["param"] == "n", e.body


def check_completions():
    r = client.completions.create(model=SMOL, prompt="The capital of France is", max_tokens=4, temperature=0)
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length", r
    assert "Paris" in r.choices[0].text, r.choices[0].text
    text = "".join(c.choices[0].text for c in client.completions.create(
        model=SMOL, prompt="The capital of France is", max_tokens=4, temperature=0, stream=True) if c.choices)
    assert text == r.choices[0].text, (text, r.choices[0].text)


def check_logprobs():
    r = client.chat.completions.create(model=SMOL, messages=user("Hi"), max_tokens=3, logprobs=True, top_logprobs=2, temperature=0)
    lp = r.choices[0].logprobs.content
    assert len(lp) == 3 and all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in lp), lp
    assert lp[0].token == lp[0].top_logprobs[0].token, lp[0]
    # They cover the answer's text only: no reasoning, tool-call markup or end-of-turn token.
    def tokens(r):
        lp = r.choices[0].logprobs
        return [t.token for t in (lp.content or [])] if lp else []
    r = client.chat.completions.create(model="scripted-reasoning", messages=user("Hello"), logprobs=True, temperature=0)
    assert tokens(r) == ["\n\nHello from Paris!"], tokens(r)
    r = client.chat.completions.create(model="scripted-tools", messages=user("Hi"), tools=[WEATHER_TOOL],
                                       logprobs=True, temperature=0)
    assert r.choices[0].message.tool_calls and tokens(r) == [], tokens(r)
    # Cut right after its opening marker, a call leaves no markup in the text either.
    r = client.chat.completions.create(model="scripted-tools", messages=user("Hi"), tools=[WEATHER_TOOL],
                                       max_tokens=1, temperature=0)
    c = r.choices[0]
    assert c.finish_reason == "length" and not c.message.content and not c.message.tool_calls, c


def check_tool_call_history_is_rendered():
    from transformers import AutoTokenizer

    messages = [
        {"role": "system", "content": "Use tools when needed."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 18}"},
        {"role": "assistant", "content": "It is 18 degrees."},
        {"role": "user", "content": "Thanks!"},
    ]
    r = client.chat.completions.create(model="tiny-qwen", messages=messages, tools=[WEATHER_TOOL], max_tokens=2)
    tok = AutoTokenizer.from_pretrained(os.environ["TINY_QWEN_DIR"])
    ref_messages = json.loads(json.dumps(messages))
    ref_messages[2]["tool_calls"][0]["function"]["arguments"] = {"city": "Paris"}
    ids = tok.apply_chat_template(ref_messages, tools=[WEATHER_TOOL], add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    assert r.usage.prompt_tokens == len(ids), (r.usage.prompt_tokens, len(ids))


def check_continue_final_message_extension():
    # vLLM's extension: the answer goes on from a final assistant message instead of a new turn.
    question = [{"role": "user", "content": "What is the capital of France?"}]
    plain = client.chat.completions.create(model=SMOL, messages=question, max_tokens=16, temperature=0)
    words = plain.choices[0].message.content.split(" ")
    assert len(words) > 3, plain
    prefill = " ".join(words[:3])
    messages = question + [{"role": "assistant", "content": prefill}]
    r = client.chat.completions.create(model=SMOL, messages=messages, max_tokens=16, temperature=0,
                                       extra_body={"continue_final_message": True, "add_generation_prompt": False})
    whole = prefill + r.choices[0].message.content
    text = plain.choices[0].message.content
    assert whole.startswith(text) or text.startswith(whole), (prefill, r.choices[0].message.content, text)
    # /v1/tokenize counts the same prompt.
    req = urllib.request.Request(BASE + "/tokenize", method="POST",
                                 headers={"content-type": "application/json"},
                                 data=json.dumps({"model": SMOL, "messages": messages,
                                                  "continue_final_message": True}).encode())
    count = json.loads(urllib.request.urlopen(req, timeout=60).read())
    assert count["count"] == r.usage.prompt_tokens, (count, r.usage)
    # A conversation that does not end with the assistant cannot be continued.
    try:
        client.chat.completions.create(model=SMOL, messages=question, max_tokens=2,
                                       extra_body={"continue_final_message": True})
        raise AssertionError("continuing a user message must be refused")
    except openai.BadRequestError as e:
        assert "continue_final_message" in str(e.body), e.body
    try:
        client.chat.completions.create(model=SMOL, messages=messages, max_tokens=2,
                                       extra_body={"add_generation_prompt": False})
        raise AssertionError("add_generation_prompt false alone must be refused, not ignored")
    except openai.BadRequestError as e:
        assert e.body["param"] == "add_generation_prompt", e.body


def check_a_history_with_null_content_renders_on_any_template():
    # The shape the SDK itself returns for a call-only turn ("content": null), sent back to a model
    # whose template adds content to strings (SmolLM2's), and a refused turn ("refusal").
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees"},
        {"role": "assistant", "content": None, "refusal": "I cannot help with that."},
        {"role": "user", "content": "Thanks!"},
    ]
    r = client.chat.completions.create(model=SMOL, messages=history, max_tokens=2)
    assert r.choices[0].finish_reason in ("stop", "length"), r
    counted = client.chat.completions.create(model=SMOL, messages=history[:1], max_tokens=1).usage.prompt_tokens
    assert r.usage.prompt_tokens > counted + 10, ("the turns are in the prompt", r.usage, counted)


def check_completions_follow_response_format():
    schema = {"type": "string", "enum": ["yes", "no"]}
    r = client.completions.create(model=SMOL, prompt="Is the sky blue?", max_tokens=8, temperature=0,
                                  extra_body={"response_format": {"type": "json_schema",
                                                                  "json_schema": {"name": "a", "schema": schema}}})
    assert json.loads(r.choices[0].text) in ("yes", "no"), r.choices[0].text


def check_tool_calls():
    r = client.chat.completions.create(
        model="scripted-tools", messages=user("What's the weather in Paris?"), tools=[WEATHER_TOOL], temperature=0)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls", c
    assert not c.message.content, c.message.content
    call = c.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather", call
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}, call.function.arguments
    # Streamed: id and name first, then argument fragments.
    chunks = list(client.chat.completions.create(
        model="scripted-tools", messages=user("What's the weather in Paris?"), tools=[WEATHER_TOOL], temperature=0, stream=True))
    deltas = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert deltas[0].id and deltas[0].function.name == "get_weather", deltas[0]
    assert all(d.id is None and d.function.name is None for d in deltas[1:]), deltas
    assert len(deltas) > 2, "arguments arrive in fragments"
    args = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(args) == {"city": "Paris", "unit": "celsius"}, args
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
    # tool_choice "none" hides the tools: the same text comes back as content, with no calls.
    r = client.chat.completions.create(
        model="scripted-tools", messages=user("Weather?"), tools=[WEATHER_TOOL], tool_choice="none", temperature=0)
    assert not r.choices[0].message.tool_calls and r.choices[0].finish_reason == "stop", r


def check_a_tool_call_cut_short_is_one_partial_call():
    ask = dict(model="scripted-tools", messages=user("What's the weather in Paris?"), tools=[WEATHER_TOOL],
               temperature=0)
    full = client.chat.completions.create(**ask).choices[0].message.tool_calls[0].function.arguments
    for how in ({"max_tokens": 3}, {"stop": ["Paris"]}):
        r = client.chat.completions.create(**ask, **how)
        c = r.choices[0]
        # One representation: the call as far as it got, never its markup as content too.
        assert not c.message.content, (how, c.message.content)
        assert len(c.message.tool_calls) == 1 and c.message.tool_calls[0].function.name == "get_weather", (how, c)
        partial = c.message.tool_calls[0].function.arguments
        assert full.startswith(partial) and partial != full, (how, partial, full)
        # Cut, not finished: the reason says so ("tool_calls" promises arguments that parse).
        assert c.finish_reason == ("length" if "max_tokens" in how else "stop"), (how, c.finish_reason)
        chunks = list(client.chat.completions.create(**ask, **how, stream=True))
        deltas = [ch.choices[0].delta for ch in chunks if ch.choices]
        assert not "".join(d.content or "" for d in deltas), (how, deltas)
        streamed = "".join(tc.function.arguments or "" for d in deltas for tc in (d.tool_calls or []))
        assert streamed == partial and [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == c.finish_reason
        # The agent loop sends it back as it came: accepted, not a 400.
        history = ask["messages"] + [c.message.model_dump(exclude_none=True),
                                     {"role": "tool", "tool_call_id": c.message.tool_calls[0].id, "content": "?"}]
        client.chat.completions.create(**{**ask, "messages": history}, max_tokens=2)
    # A forced call cut short is a length finish, not a server error.
    r = client.chat.completions.create(**ask, max_tokens=2,
                                       tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.tool_calls[0].function.name == "get_weather", r


def check_tool_choice_enforced_or_refused():
    # A model whose template has no tools cannot be forced to call one: 400, never plain text.
    try:
        client.chat.completions.create(model=SMOL, messages=user("Weather?"), tools=[WEATHER_TOOL], tool_choice="required")
        raise AssertionError("required tool choice on a model without tool support must be refused")
    except openai.BadRequestError as e:
        assert e.body["param"] in ("tool_choice", "tools"), e.body
    r = client.chat.completions.create(
        model="scripted-tools", messages=user("Weather?"), tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, temperature=0)
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather", r


def check_reasoning_content():
    r = client.chat.completions.create(model="scripted-reasoning", messages=user("Hello"), temperature=0)
    m = r.choices[0].message
    reasoning = getattr(m, "reasoning_content", None) or (m.model_extra or {}).get("reasoning_content")
    assert reasoning and reasoning.strip() == "The user greets me.", reasoning
    assert m.content.strip() == "Hello from Paris!", m.content
    chunks = list(client.chat.completions.create(model="scripted-reasoning", messages=user("Hello"), temperature=0, stream=True))
    r_text = "".join((ch.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for ch in chunks if ch.choices)
    c_text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert r_text.strip() == "The user greets me." and c_text.strip() == "Hello from Paris!", (r_text, c_text)


def check_harmony_channels_and_calls():
    r = client.chat.completions.create(model="scripted-harmony", messages=user("Hello"), temperature=0)
    m = r.choices[0].message
    reasoning = getattr(m, "reasoning_content", None) or (m.model_extra or {}).get("reasoning_content")
    assert reasoning == "The user greets me." and m.content == "Hello from Paris!", (reasoning, m.content)
    # The analysis header, the thought and the end of the channel: one token each in this script.
    assert r.usage.completion_tokens_details.reasoning_tokens == 3, r.usage
    chunks = list(client.chat.completions.create(model="scripted-harmony", messages=user("Hello"), temperature=0, stream=True))
    r_text = "".join((ch.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for ch in chunks if ch.choices)
    c_text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert (r_text, c_text) == ("The user greets me.", "Hello from Paris!"), (r_text, c_text)
    assert "<|" not in r_text + c_text, "no harmony marker reaches the client"
    r = client.chat.completions.create(
        model="scripted-harmony-tools", messages=user("Weather in Paris?"), tools=[WEATHER_TOOL], temperature=0)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls" and not c.message.content, c
    assert (c.message.model_extra or {}).get("reasoning_content") == "Need the weather.", c.message
    call = c.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id.startswith("call_"), call
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}, call.function.arguments
    chunks = list(client.chat.completions.create(
        model="scripted-harmony-tools", messages=user("Weather in Paris?"), tools=[WEATHER_TOOL], temperature=0, stream=True))
    deltas = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather", deltas
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Paris", "unit": "celsius"}
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
    # Required: the name is generated under the grammar too, here where the vocabulary has no
    # special tokens for harmony's markers (they are spelled out), never a 500.
    r = client.chat.completions.create(model="scripted-harmony-tools", messages=user("Weather in Paris?"),
                                       tools=[WEATHER_TOOL], tool_choice="required", max_tokens=64, temperature=0)
    c = r.choices[0]
    assert c.finish_reason in ("tool_calls", "length") and c.message.tool_calls, c
    assert c.message.tool_calls[0].function.name == "get_weather", c.message.tool_calls
    # No tools offered, or hidden: the model's call is no tool call.
    for extra in [{}, {"tools": [WEATHER_TOOL], "tool_choice": "none"}]:
        c = client.chat.completions.create(model="scripted-harmony-tools", messages=user("Weather in Paris?"),
                                           temperature=0, **extra).choices[0]
        assert c.finish_reason == "stop" and not c.message.tool_calls, (extra, c)
    # A stop string inside the arguments ends the answer as a stop, not a finished call.
    c = client.chat.completions.create(model="scripted-harmony-tools", messages=user("Weather in Paris?"),
                                       tools=[WEATHER_TOOL], stop=["Paris"], temperature=0).choices[0]
    assert c.finish_reason == "stop", c
    # One inside a header leaves no header text behind.
    c = client.chat.completions.create(model="scripted-harmony-tools", messages=user("Weather in Paris?"),
                                       tools=[WEATHER_TOOL], stop=["get_weather"], temperature=0).choices[0]
    assert not c.message.content and not c.message.tool_calls and c.finish_reason == "stop", c


def check_phi4_mini_calls():
    r = client.chat.completions.create(
        model="scripted-phi4-tools", messages=user("Weather in Paris?"), tools=[WEATHER_TOOL], temperature=0)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls" and not c.message.content, c
    assert [(t.function.name, json.loads(t.function.arguments)) for t in c.message.tool_calls] == [
        ("get_weather", {"city": "Paris", "unit": "celsius"})], c.message.tool_calls
    chunks = list(client.chat.completions.create(
        model="scripted-phi4-tools", messages=user("Weather in Paris?"), tools=[WEATHER_TOOL], temperature=0, stream=True))
    deltas = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather" and deltas[0].id.startswith("call_"), deltas
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Paris", "unit": "celsius"}
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert "<|" not in text and "functools" not in text, text
    # Without tools the same output is just text, markers and all.
    r = client.chat.completions.create(model="scripted-phi4-tools", messages=user("Weather?"), temperature=0)
    assert r.choices[0].message.content.startswith("<|tool_call|>["), r.choices[0].message


def check_raw_error_envelope():
    req = urllib.request.Request(BASE + "/chat/completions", data=b"{broken", headers={"content-type": "application/json"})
    try:
        urllib.request.urlopen(req)
        raise AssertionError("broken JSON must be refused")
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        assert e.code == 400 and set(body["error"]) == {"message", "type", "param", "code"}, body


if __name__ == "__main__":
    run(globals())
