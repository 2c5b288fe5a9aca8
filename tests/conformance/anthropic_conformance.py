"""Anthropic Messages API conformance of zeta-gateway, checked with the official `anthropic` client.

Usage: anthropic_conformance.py BASE_URL   (the gateway's root, without /v1)

The Rust test `tests/e2e/anthropic_conformance.rs` starts the real daemon and gateway (with an API
key, sent as x-api-key by the SDK) and runs this script against them. Models it expects:
  smollm2-135m        the embedded SmolLM2 (text, streaming, stop_sequences, max_tokens)
  scripted-tools      answers with one get_weather tool call (greedy)
  scripted-reasoning  answers "<think>...</think>" then text (greedy)

Each check is a function named check_*; all run, failures are reported together, and the exit
status is the number of failures (0 = all passed).
"""

import json
import sys

import anthropic

from checks import run

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
KEY = sys.argv[2] if len(sys.argv) > 2 else "unused"
client = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=120)
SMOL = "smollm2-135m"
# The current API has no sampling fields; this server still takes temperature as an extension.
GREEDY = {"temperature": 0}
WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
}


def user(text):
    return [{"role": "user", "content": text}]


def prompt_tokens(usage):
    """All the prompt's tokens: Anthropic counts those read from the cache apart."""
    return usage.input_tokens + (usage.cache_read_input_tokens or 0)


def check_plain_message():
    m = client.messages.create(model=SMOL, max_tokens=12, system="You are terse.", messages=user("What is the capital of France?"),
                               extra_body=GREEDY)
    assert m.type == "message" and m.role == "assistant" and m.model == SMOL, m
    assert m.id.startswith("msg_"), m.id
    assert m.content and m.content[0].type == "text" and m.content[0].text, m.content
    assert m.stop_reason in ("end_turn", "max_tokens"), m.stop_reason
    assert m.usage.input_tokens > 0 and 0 < m.usage.output_tokens <= 12, m.usage


def check_max_tokens_and_stop_sequences():
    m = client.messages.create(model=SMOL, max_tokens=3, messages=user("Count from one to ten."), extra_body=GREEDY)
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 3, m


def check_a_stop_sequence_is_reported_as_such():
    question = user("Name three colours.")
    plain = client.messages.create(model=SMOL, max_tokens=16, messages=question, extra_body=GREEDY).content[0].text
    words = plain.split()
    assert len(words) >= 3, plain
    stop = words[2]
    m = client.messages.create(model=SMOL, max_tokens=16, messages=question, stop_sequences=[stop, "\u00a7never"],
                               extra_body=GREEDY)
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == stop, m
    assert m.content[0].text == plain[: plain.index(stop)], (m.content, plain)
    with client.messages.stream(model=SMOL, max_tokens=16, messages=question, stop_sequences=[stop],
                                extra_body=GREEDY) as s:
        final = s.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == stop, final
    # Ended by the model or the limit, there is no stop sequence.
    m = client.messages.create(model=SMOL, max_tokens=3, messages=question, stop_sequences=["\u00a7never"],
                               extra_body=GREEDY)
    assert m.stop_reason == "max_tokens" and m.stop_sequence is None, m


def check_a_final_assistant_message_is_continued():
    question = "What is the capital of France?"
    plain = client.messages.create(model=SMOL, max_tokens=16, messages=user(question), extra_body=GREEDY).content[0].text
    words = plain.split(" ")
    assert len(words) > 3, plain
    prefill = " ".join(words[:3])
    m = client.messages.create(model=SMOL, max_tokens=16, extra_body=GREEDY, messages=[
        {"role": "user", "content": question}, {"role": "assistant", "content": prefill}])
    rest = m.content[0].text
    # The answer goes on from the prefill (which it does not repeat) as the model would have.
    whole = prefill + rest
    assert whole.startswith(plain) or plain.startswith(whole), (prefill, rest, plain)
    try:
        client.messages.create(model=SMOL, max_tokens=4, messages=[
            {"role": "user", "content": question}, {"role": "assistant", "content": prefill + " "}])
        raise AssertionError("trailing whitespace in a prefill must be refused")
    except anthropic.BadRequestError as e:
        assert "trailing whitespace" in e.body["error"]["message"], e.body
    try:
        client.messages.create(model=SMOL, max_tokens=4, messages=[
            {"role": "user", "content": question},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]}])
        raise AssertionError("a final tool_use turn must be refused")
    except anthropic.BadRequestError as e:
        assert "tool_result" in e.body["error"]["message"], e.body


def check_usage_counts_cached_tokens_apart():
    question = user("Tell me about the sea.")
    client.messages.create(model=SMOL, max_tokens=2, messages=question, extra_body=GREEDY)
    again = client.messages.create(model=SMOL, max_tokens=2, messages=question, extra_body=GREEDY)
    n = client.messages.count_tokens(model=SMOL, messages=question)
    assert again.usage.cache_read_input_tokens > 0, again.usage
    assert again.usage.input_tokens + again.usage.cache_read_input_tokens == n.input_tokens, (again.usage, n)
    assert again.usage.cache_creation_input_tokens == 0, again.usage


def check_streaming_events():
    with client.messages.stream(model=SMOL, max_tokens=10, messages=user("Say hello."), extra_body=GREEDY) as s:
        events = list(s)
        final = s.get_final_message()
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start", kinds
    assert "content_block_start" in kinds and "content_block_delta" in kinds and "content_block_stop" in kinds, kinds
    assert kinds[-1] == "message_stop", kinds
    assert final.content[0].type == "text" and final.content[0].text, final
    assert final.usage.output_tokens == 10 or final.stop_reason == "end_turn", final
    plain = client.messages.create(model=SMOL, max_tokens=10, messages=user("Say hello."), extra_body=GREEDY)
    assert final.content[0].text == plain.content[0].text, (final.content, plain.content)


def check_tool_use():
    m = client.messages.create(model="scripted-tools", max_tokens=64, tools=[WEATHER],
                               messages=user("What's the weather in Paris?"), extra_body=GREEDY)
    assert m.stop_reason == "tool_use", m
    uses = [b for b in m.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather" and uses[0].input == {"city": "Paris", "unit": "celsius"}, m.content
    # Streamed: the tool_use block starts with id and name, then input_json_delta fragments.
    with client.messages.stream(model="scripted-tools", max_tokens=64, tools=[WEATHER],
                                messages=user("What's the weather in Paris?"), extra_body=GREEDY) as s:
        events = list(s)
        final = s.get_final_message()
    deltas = [e for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert len(deltas) > 1, "arguments arrive in fragments"
    tool = [b for b in final.content if b.type == "tool_use"][0]
    assert tool.input == {"city": "Paris", "unit": "celsius"}, final.content
    # The call and its result, sent back: rendered through the template and answered.
    follow = client.messages.create(model="scripted-tools", max_tokens=8, tools=[WEATHER], extra_body=GREEDY, messages=[
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": tool.id, "name": "get_weather", "input": tool.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "18 degrees"}]},
    ])
    assert prompt_tokens(follow.usage) > prompt_tokens(m.usage), (follow.usage, m.usage)
    # A failed result reads as one: is_error reaches the prompt.
    def result(is_error):
        return client.messages.count_tokens(model="scripted-tools", tools=[WEATHER], messages=[
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": tool.id, "name": "get_weather", "input": tool.input}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "18 degrees",
                                          "is_error": is_error}]},
        ]).input_tokens
    assert result(True) > result(False), (result(True), result(False))
    # tool_choice any / tool force a call; none hides the tools.
    forced = client.messages.create(model="scripted-tools", max_tokens=64, tools=[WEATHER], extra_body=GREEDY,
                                    tool_choice={"type": "tool", "name": "get_weather"}, messages=user("Hi"))
    assert [b.name for b in forced.content if b.type == "tool_use"] == ["get_weather"], forced.content
    hidden = client.messages.create(model="scripted-tools", max_tokens=64, tools=[WEATHER], extra_body=GREEDY,
                                    tool_choice={"type": "none"}, messages=user("Hi"))
    assert not [b for b in hidden.content if b.type == "tool_use"] and hidden.stop_reason == "end_turn", hidden
    # Cut short by max_tokens: one tool_use block with the input it was becoming, the same whole
    # or streamed (the SDK reads the streamed partial JSON), and no markup as text beside it.
    cut = dict(model="scripted-tools", max_tokens=3, tools=[WEATHER], extra_body=GREEDY,
               messages=user("What's the weather in Paris?"))
    m = client.messages.create(**cut)
    assert m.stop_reason == "max_tokens" and [b.type for b in m.content] == ["tool_use"], m.content
    assert m.content[0].input == {"city": "Paris"}, m.content
    with client.messages.stream(**cut) as s:
        final = s.get_final_message()
    assert [(b.type, b.input) for b in final.content] == [("tool_use", {"city": "Paris"})], final.content
    # Cut inside a string by a stop sequence: the unfinished value is left out, whole or streamed.
    for stops, want in [(["Paris"], {}), (["celsius"], {"city": "Paris"})]:
        at = dict(cut, max_tokens=32, stop_sequences=stops)
        m = client.messages.create(**at)
        with client.messages.stream(**at) as s:
            final = s.get_final_message()
        assert m.stop_reason == final.stop_reason == "stop_sequence", (m, final)
        assert [(b.type, b.input) for b in m.content] == [(b.type, b.input) for b in final.content] == [("tool_use", want)], (
            stops, m.content, final.content)
    # A forced call cut short is a max_tokens stop, not a server error.
    forced = client.messages.create(**{**cut, "max_tokens": 2}, tool_choice={"type": "any"})
    assert forced.stop_reason == "max_tokens", forced


def check_thinking():
    m = client.messages.create(model="scripted-reasoning", max_tokens=64, messages=user("Hello"), extra_body=GREEDY,
                               thinking={"type": "enabled", "budget_tokens": 1024})
    kinds = [b.type for b in m.content]
    assert kinds == ["thinking", "text"], m.content
    assert m.content[0].thinking.strip() == "The user greets me.", m.content[0]
    assert m.content[1].text.strip() == "Hello from Paris!", m.content[1]
    with client.messages.stream(model="scripted-reasoning", max_tokens=64, messages=user("Hello"), extra_body=GREEDY,
                                thinking={"type": "enabled", "budget_tokens": 1024}) as s:
        events = list(s)
    assert any(e.type == "content_block_delta" and e.delta.type == "thinking_delta" for e in events), [e.type for e in events]
    # Without `thinking`, the reasoning is not part of the answer.
    m = client.messages.create(model="scripted-reasoning", max_tokens=64, messages=user("Hello"), extra_body=GREEDY)
    assert [b.type for b in m.content] == ["text"] and m.content[0].text.strip() == "Hello from Paris!", m.content
    # Cut inside the thinking: the same blocks whole or streamed, and no empty text block
    # (which Anthropic would refuse if the client sent the turn back).
    cut = dict(model="scripted-reasoning", max_tokens=2, messages=user("Hello"), extra_body=GREEDY,
               thinking={"type": "enabled", "budget_tokens": 1024})
    m = client.messages.create(**cut)
    with client.messages.stream(**cut) as s:
        streamed = s.get_final_message()
    assert [b.type for b in m.content] == [b.type for b in streamed.content] == ["thinking"], (m.content, streamed.content)


def check_count_tokens():
    n = client.messages.count_tokens(model=SMOL, messages=user("What is the capital of France?"))
    m = client.messages.create(model=SMOL, max_tokens=1, messages=user("What is the capital of France?"), extra_body=GREEDY)
    assert n.input_tokens == prompt_tokens(m.usage) > 0, (n, m.usage)
    # A system prompt replaces the template's default one: counted as the generation reads it.
    with_system = client.messages.count_tokens(model=SMOL, system="Be terse.", messages=user("What is the capital of France?"))
    m = client.messages.create(model=SMOL, max_tokens=1, system="Be terse.", messages=user("What is the capital of France?"),
                               extra_body=GREEDY)
    assert with_system.input_tokens == prompt_tokens(m.usage) != n.input_tokens, (with_system, m.usage, n)
    # Tools and a forced call count too.
    tools = client.messages.count_tokens(model="scripted-tools", tools=[WEATHER], tool_choice={"type": "any"},
                                         messages=user("Weather?"))
    plain = client.messages.count_tokens(model="scripted-tools", messages=user("Weather?"))
    assert tools.input_tokens > plain.input_tokens, (tools, plain)


def check_errors_in_anthropics_envelope():
    try:
        client.messages.create(model="no-such-model", max_tokens=5, messages=user("Hi"))
        raise AssertionError("an unknown model must be refused")
    except anthropic.NotFoundError as e:
        assert e.status_code == 404 and e.body["type"] == "error" and e.body["error"]["type"] == "not_found_error", e.body
    try:
        client.messages.create(model=SMOL, max_tokens=5, messages=[{"role": "system", "content": "x"}])
        raise AssertionError("a system role inside messages must be refused")
    except anthropic.BadRequestError as e:
        assert e.body["error"]["type"] == "invalid_request_error" and "messages[0].role" in e.body["error"]["message"], e.body
    for field, value in [("mcp_servers", [{"type": "url", "url": "http://x", "name": "x"}]), ("container", "c_1")]:
        try:
            client.messages.create(model=SMOL, max_tokens=5, messages=user("Hi"), extra_body={field: value})
            raise AssertionError(f"{field} must be refused, not ignored")
        except anthropic.BadRequestError as e:
            assert e.body["error"]["message"].startswith((field + ": ", f"'{field}' ")), e.body
    def refused(needle, **kw):
        try:
            client.messages.create(model=SMOL, max_tokens=5, **kw)
        except anthropic.BadRequestError as e:
            message = e.body["error"]["message"]
            assert needle in message, (needle, e.body)
            return message
        raise AssertionError(f"{kw} must be refused")

    # A result of no call names the block and field the client wrote.
    refused("messages[2].content[1].tool_use_id", system="S", messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me look."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                                     {"type": "tool_result", "tool_use_id": "toolu_X", "content": "rain"}]}])
    m = refused("top_p", messages=user("Hi"), extra_body={"top_p": 0})
    assert "greater than 0" in m and "0000" not in m, m
    refused("stop_sequences", messages=user("Hi"), extra_body={"stop_sequences": "H"})
    refused("tools[1].name", messages=user("Hi"), tools=[WEATHER, WEATHER])
    # Errors the gateway makes before any handler (wrong method, wrong content type, wrong key)
    # come in Anthropic's envelope on its routes too.
    import urllib.error
    import urllib.request
    for method, headers, status in [("GET", {}, 405), ("POST", {"content-type": "text/plain"}, 415),
                                    ("POST", {"content-type": "application/json", "x-api-key": "wrong"}, 401)]:
        req = urllib.request.Request(BASE + "/v1/messages", data=b"{}" if method == "POST" else None, method=method,
                                     headers={"x-api-key": KEY, **headers})
        try:
            urllib.request.urlopen(req, timeout=30)
            raise AssertionError(f"{method} {headers} must fail")
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
            assert e.code == status and body["type"] == "error" and body["error"]["message"], (status, body)
    try:
        anthropic.Anthropic(base_url=BASE, api_key="wrong", max_retries=0).messages.create(
            model=SMOL, max_tokens=5, messages=user("Hi"))
        raise AssertionError("a wrong key must be refused")
    except anthropic.AuthenticationError as e:
        assert e.status_code == 401, e


if __name__ == "__main__":
    run(globals())
