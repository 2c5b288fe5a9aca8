"""OpenAI Responses API conformance of zeta-gateway, checked with the official `openai` client.

Usage: responses_conformance.py BASE_URL   (the gateway's /v1 root)

The Rust test `tests/e2e/responses_conformance.rs` starts the real daemon and gateway and runs this
script against them. Models it expects:
  smollm2-135m        the embedded SmolLM2 (text, streaming, max_output_tokens)
  scripted-tools      answers with one get_weather tool call (greedy)
  scripted-reasoning  answers "<think>...</think>" then text (greedy)
  scripted-short      scripted-tools with a 128-token context (truncation)

Each check is a function named check_*; all run, failures are reported together, and the exit
status is the number of failures (0 = all passed).
"""

import json
import sys

import openai

from checks import run

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/v1"
client = openai.OpenAI(base_url=BASE, api_key="unused", max_retries=0, timeout=120)
SMOL = "smollm2-135m"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
}
PARIS = {"city": "Paris", "unit": "celsius"}


def check_plain_response():
    r = client.responses.create(model=SMOL, instructions="You are terse.", input="What is the capital of France?",
                                max_output_tokens=12, temperature=0)
    assert r.object == "response" and r.id.startswith("resp_") and r.model == SMOL, r
    assert r.status in ("completed", "incomplete"), r.status
    assert [o.type for o in r.output] == ["message"], r.output
    assert r.output[0].role == "assistant" and r.output[0].content[0].type == "output_text", r.output
    assert r.output_text, r
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 12, r.usage
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens, r.usage
    assert r.instructions == "You are terse." and r.max_output_tokens == 12 and r.store is False, r
    # The same conversation through chat completions is the same prompt and the same greedy text.
    c = client.chat.completions.create(model=SMOL, max_tokens=12, temperature=0, messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is the capital of France?"}])
    assert c.choices[0].message.content == r.output_text, (c.choices[0].message.content, r.output_text)
    assert c.usage.prompt_tokens == r.usage.input_tokens, (c.usage, r.usage)
    # Items in place of the string: the same prompt.
    items = client.responses.create(model=SMOL, max_output_tokens=12, temperature=0, input=[
        {"role": "developer", "content": "You are terse."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is the capital of France?"}]}])
    assert items.output_text == r.output_text and items.usage.input_tokens == r.usage.input_tokens, (items, r)


def check_max_output_tokens_is_incomplete():
    r = client.responses.create(model=SMOL, input="Count from one to ten.", max_output_tokens=3, temperature=0)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens", r
    assert r.usage.output_tokens == 3, r.usage
    assert r.usage.output_tokens_details.reasoning_tokens == 0 and r.completed_at is None, r
    # Settings come back as they were sent, not as the float32 the daemon samples with.
    r = client.responses.create(model=SMOL, input="Hi", max_output_tokens=1, temperature=0.3, top_p=0.9)
    assert (r.temperature, r.top_p) == (0.3, 0.9), (r.temperature, r.top_p)
    # Not sent: the model's configured defaults apply, which the gateway does not know.
    r = client.responses.create(model=SMOL, input="Hi", max_output_tokens=1)
    assert (r.temperature, r.top_p) == (None, None), (r.temperature, r.top_p)
    # The message the limit cut short says so too, streamed or not.
    assert r.output[-1].type == "message" and r.output[-1].status == "incomplete", r.output
    events = list(client.responses.create(model=SMOL, input="Count from one to ten.", max_output_tokens=3,
                                          temperature=0, stream=True))
    done = [e for e in events if e.type == "response.output_item.done"]
    assert done[-1].item.status == "incomplete" and events[-1].type == "response.incomplete", events[-3:]
    assert events[-1].response.output[-1].status == "incomplete", events[-1].response.output


def check_streamed_events():
    events = list(client.responses.create(model=SMOL, input="Say hello.", max_output_tokens=10, temperature=0,
                                          stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"], kinds
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          kinds[-1]] and kinds[-1] in ("response.completed", "response.incomplete"), kinds
    assert [e.sequence_number for e in events] == list(range(len(events))), [e.sequence_number for e in events]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = [e for e in events if e.type == "response.output_text.done"][0]
    final = events[-1].response
    assert text and text == done.text == final.output_text, (text, done.text, final.output_text)
    assert final.usage.output_tokens > 0, final.usage
    plain = client.responses.create(model=SMOL, input="Say hello.", max_output_tokens=10, temperature=0)
    assert plain.output_text == text, (plain.output_text, text)
    # The SDK's stream helper (which wants `response.completed`: an answer that ends by itself)
    # assembles the same response as the JSON one.
    with client.responses.stream(model=SMOL, input="Say hello.", max_output_tokens=64, temperature=0) as s:
        for _ in s:
            pass
        final = s.get_final_response()
    whole = client.responses.create(model=SMOL, input="Say hello.", max_output_tokens=64, temperature=0)
    assert final.status == whole.status == "completed" and final.output_text == whole.output_text, (final, whole)


def check_function_calls():
    r = client.responses.create(model="scripted-tools", input="What's the weather in Paris?", tools=[WEATHER],
                                temperature=0)
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather", r.output
    assert json.loads(calls[0].arguments) == PARIS and calls[0].call_id, calls[0]
    # Streamed: the item is announced with its name, then the arguments arrive in fragments.
    events = list(client.responses.create(model="scripted-tools", input="What's the weather in Paris?",
                                          tools=[WEATHER], temperature=0, stream=True))
    added = [e for e in events if e.type == "response.output_item.added" and e.item.type == "function_call"]
    assert len(added) == 1 and added[0].item.name == "get_weather", [e.type for e in events]
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(deltas) > 1 and json.loads("".join(deltas)) == PARIS and json.loads(done[0].arguments) == PARIS, events
    # The call and its output, sent back as items: rendered through the template and answered.
    call = calls[0]
    follow = client.responses.create(model="scripted-tools", tools=[WEATHER], temperature=0, max_output_tokens=8, input=[
        {"role": "user", "content": "What's the weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees"},
    ])
    assert follow.usage.input_tokens > r.usage.input_tokens, (follow.usage, r.usage)
    # A named function forces the call; none hides the tools.
    forced = client.responses.create(model="scripted-tools", input="Hi", tools=[WEATHER], temperature=0,
                                     tool_choice={"type": "function", "name": "get_weather"})
    assert [o.name for o in forced.output if o.type == "function_call"] == ["get_weather"], forced.output
    hidden = client.responses.create(model="scripted-tools", input="Hi", tools=[WEATHER], temperature=0,
                                     tool_choice="none")
    assert [o.type for o in hidden.output] == ["message"], hidden.output


def check_reasoning_summary():
    r = client.responses.create(model="scripted-reasoning", input="Hello", temperature=0, reasoning={"summary": "auto"})
    assert [o.type for o in r.output] == ["reasoning", "message"], r.output
    assert r.output[0].summary[0].text.strip() == "The user greets me.", r.output[0]
    assert r.output_text.strip() == "Hello from Paris!", r.output_text
    # <think>, the thought and </think> are one token each in this script.
    assert r.usage.output_tokens_details.reasoning_tokens == 3, r.usage
    assert r.status == "completed" and r.completed_at is not None and r.completed_at >= r.created_at, r
    events = list(client.responses.create(model="scripted-reasoning", input="Hello", temperature=0,
                                          reasoning={"summary": "auto"}, stream=True))
    thought = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert thought.strip() == "The user greets me.", [e.type for e in events]
    # Without a summary asked for, the thinking stays out of the answer.
    plain = client.responses.create(model="scripted-reasoning", input="Hello", temperature=0)
    assert [o.type for o in plain.output] == ["message"] and plain.output_text.strip() == "Hello from Paris!", plain


def check_auto_truncation_drops_the_oldest_turns():
    short = "scripted-short"
    turns = []
    for i in range(12):
        turns += [{"role": "user", "content": f"question {i}: " + "tell me more " * 2},
                  {"role": "assistant", "content": "it is so " * 10}]
    turns.append({"role": "user", "content": "and the last one?"})
    try:
        client.responses.create(model=short, input=turns, max_output_tokens=4)
        raise AssertionError("a conversation over the context must be refused without truncation")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and e.body["code"] == "context_length_exceeded", e.body
    r = client.responses.create(model=short, instructions="Be brief.", input=turns, max_output_tokens=4,
                                truncation="auto")
    assert r.truncation == "auto" and r.status in ("completed", "incomplete"), r
    assert 0 < r.usage.input_tokens and r.usage.input_tokens + 4 <= 128, r.usage
    # Kept: the instructions and the newest turns, more than the last question alone.
    last = client.responses.create(model=short, instructions="Be brief.", input=[turns[-1]], max_output_tokens=4)
    assert r.usage.input_tokens > last.usage.input_tokens, (r.usage, last.usage)
    # Streamed the same way.
    events = list(client.responses.create(model=short, input=turns, max_output_tokens=4, truncation="auto",
                                          stream=True))
    assert events[-1].type in ("response.completed", "response.incomplete"), events[-1]
    assert events[-1].response.truncation == "auto", events[-1].response


def check_refusals_name_the_field():
    def refused(param, **kw):
        try:
            client.responses.create(model=SMOL, max_output_tokens=2, **kw)
        except openai.BadRequestError as e:
            assert e.status_code == 400 and e.body["param"] == param, (param, e.body)
            return e.body["message"]
        raise AssertionError(f"{kw} must be refused")

    assert "whole conversation" in refused("store", input="Hi", store=True)
    refused("previous_response_id", input="Hi", previous_response_id="resp_123")
    refused("tools[0].type", input="Hi", tools=[{"type": "web_search"}])
    refused("input[0].content[0].type", input=[{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}])
    refused("input[0].role", input=[{"role": "robot", "content": "Hi"}])
    refused("temperature", input="Hi", temperature=3)
    refused("input", input=[])
    # Known fields whose effect is not implemented are refused rather than silently dropped.
    refused("prompt", input="Hi", extra_body={"prompt": {"id": "pmpt_1"}})
    refused("include[1]", input="Hi", include=["reasoning.encrypted_content", "message.output_text.logprobs"])
    # What Codex CLI sends with store: false is accepted (reasoning sent back is dropped anyway).
    r = client.responses.create(model=SMOL, max_output_tokens=2, input="Hi", store=False,
                                include=["reasoning.encrypted_content"])
    assert r.status in ("completed", "incomplete"), r
    refused("top_logprobs", input="Hi", extra_body={"top_logprobs": 3})
    refused("max_tool_calls", input="Hi", extra_body={"max_tool_calls": 2})
    # Chat completions fields sent here are refused, saying where they moved, not dropped.
    assert "max_output_tokens" in refused("max_tokens", input="Hi", extra_body={"max_tokens": 3})
    assert "text.format" in refused("response_format", input="Hi", extra_body={"response_format": {"type": "json_object"}})
    refused("stop", input="Hi", extra_body={"stop": ["x"]})
    assert "tools[0]" in refused("tools[1].name", input="Hi", tools=[WEATHER, WEATHER])
    refused("seed", input="Hi", extra_body={"seed": 1})
    # This server's chat extensions too: a grammar dropped would leave output the client thinks is held.
    for field, value in [("grammar", 'start: "a"'), ("top_k", 5), ("chat_template_kwargs", {"enable_thinking": False})]:
        refused(field, input="Hi", extra_body={field: value})
    # Files are media like images: unsupported, in the same words.
    assert "text only" in refused("input[0].content[0].type",
                                  input=[{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}])
    # A probability mass of 0 keeps nothing: said plainly.
    assert "greater than 0" in refused("top_p", input="Hi", top_p=0)
    # A result of no call names the item and field the client wrote.
    assert "answers no tool call" in refused("input[1].call_id", input=[
        {"role": "user", "content": "Hi"}, {"type": "function_call_output", "call_id": "c1", "output": "x"}])
    # An earlier answer's refusal part, echoed back as OpenAI returned it, is taken as its text.
    echoed = client.responses.create(model=SMOL, max_output_tokens=2, input=[
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I cannot help with that."}]},
        {"role": "user", "content": "Why not?"}])
    assert echoed.status == "incomplete", echoed
    # Allowed: store false, as stateless clients send it.
    assert client.responses.create(model=SMOL, input="Hi", max_output_tokens=2, store=False).status == "incomplete"
    try:
        client.responses.create(model="no-such-model", input="Hi")
        raise AssertionError("an unknown model must be refused")
    except openai.NotFoundError as e:
        assert e.status_code == 404


if __name__ == "__main__":
    run(globals())
