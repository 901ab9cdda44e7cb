"""The server through the official `openai` Python client (run by openai_client.rs).

Every check is an assert: the first one that fails ends the script with a non-zero status and
its message. Arguments: the API's base URL (http://HOST:PORT/v1) and an adapter folder that
the server does not serve yet (for load/unload).
"""

import json
import sys
import time

import urllib.request

import jsonschema
import openai

base_url, adapter_dir = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=300)
started = time.time()
print(f"openai {openai.__version__}", flush=True)


def step(name):
    print(f"[{time.time() - started:5.1f}s] {name}", flush=True)


def post(path, body):
    """vLLM's adapter endpoints, which the openai client has no method for: (status, text)."""
    req = urllib.request.Request(
        base_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


step("models")
ids = [m.id for m in client.models.list().data]
assert ids[:2] == ["base", "rnd"], ids

step("chat")
messages = [{"role": "user", "content": "Name a colour."}]
chat = client.chat.completions.create(
    model="base", messages=messages, max_tokens=8, temperature=0
)
assert chat.object == "chat.completion", chat
text = chat.choices[0].message.content
assert chat.choices[0].message.role == "assistant"
assert text, chat
assert chat.choices[0].finish_reason in ("stop", "length"), chat
assert chat.usage.prompt_tokens > 8 and 1 <= chat.usage.completion_tokens <= 8, chat.usage
assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens

step("completion")
prompt = "The capital of France is"
done = client.completions.create(
    model="base", prompt=prompt, max_tokens=6, temperature=0, extra_body={"ignore_eos": True}
)
assert done.object == "text_completion", done
assert done.choices[0].finish_reason == "length", done
assert done.usage.completion_tokens == 6, done.usage
base_text = done.choices[0].text
assert base_text, done

step("streaming with usage")
chunks = list(
    client.chat.completions.create(
        model="base",
        messages=messages,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
)
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
# Requests one at a time: the same batch, so the same greedy answer.
assert streamed == text, (streamed, text)
finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
assert finishes == [chat.choices[0].finish_reason], finishes
assert chunks[-1].choices == [] and chunks[-1].usage is not None, chunks[-1]
assert chunks[-1].usage.completion_tokens == chat.usage.completion_tokens, chunks[-1].usage
assert all(c.usage is None for c in chunks[:-1])

step("json_schema")
schema = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        # Bounded, so that the grammar ends a number the model would go on with forever.
        "population": {"type": "integer", "minimum": 0, "maximum": 99999999},
        "capital": {"type": "boolean"},
    },
    "required": ["city", "population", "capital"],
    "additionalProperties": False,
}
for model, temperature, seed in [("base", 0, None), ("base", 0.9, 1), ("rnd", 0, None), ("base", 1.0, 2)]:
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "The capital of France and its population, in JSON."}],
        max_tokens=40,
        temperature=temperature,
        seed=seed,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": schema, "strict": True},
        },
    )
    answer = r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop", (model, temperature, answer)
    jsonschema.validate(json.loads(answer), schema)

step("tools")
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 12},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The local time in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 12}},
                "required": ["city"],
            },
        },
    },
]
schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
ask = [{"role": "user", "content": "What is the weather in Paris?"}]
for choice, allowed in [
    ("required", {"get_weather", "get_time"}),
    ({"type": "function", "function": {"name": "get_time"}}, {"get_time"}),
]:
    r = client.chat.completions.create(
        model="base",
        messages=ask,
        tools=tools,
        tool_choice=choice,
        # One call: allowed a list, the 270M model goes on adding calls to it.
        parallel_tool_calls=False,
        max_tokens=128,
        temperature=0,
    )
    message = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls", r
    assert message.content is None and message.tool_calls, message
    for call in message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_"), call
        assert call.function.name in allowed, (call, allowed)
        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])
# The calls and their results go back into the conversation as a client sends them.
follow = client.chat.completions.create(
    model="base",
    messages=ask
    + [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "12:00"},
    ],
    tools=tools,
    tool_choice="none",
    max_tokens=8,
    temperature=0,
)
assert follow.choices[0].message.content is not None and not follow.choices[0].message.tool_calls, follow

step("adapter selection")
tuned = client.completions.create(
    model="rnd", prompt=prompt, max_tokens=6, temperature=0, extra_body={"ignore_eos": True}
)
assert tuned.model == "rnd", tuned
assert tuned.choices[0].text != base_text, (tuned.choices[0].text, base_text)

step("load and unload an adapter")
status, text = post("/load_lora_adapter", {"lora_name": "late", "lora_path": adapter_dir})
assert status == 200, text
assert "late" in [m.id for m in client.models.list().data]
late = client.completions.create(
    model="late", prompt=prompt, max_tokens=6, temperature=0, extra_body={"ignore_eos": True}
)
# The same folder as `rnd`: the same adapter.
assert late.choices[0].text == tuned.choices[0].text, (late.choices[0].text, tuned.choices[0].text)
status, text = post("/unload_lora_adapter", {"lora_name": "late"})
assert status == 200, text
try:
    client.completions.create(model="late", prompt=prompt, max_tokens=2)
    raise AssertionError("an unloaded adapter answered")
except openai.NotFoundError as e:
    assert e.status_code == 404 and "does not exist" in str(e), e

step("chat logprobs")
r = client.chat.completions.create(
    model="base", messages=messages, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3
)
content = r.choices[0].logprobs.content
assert len(content) == r.usage.completion_tokens, (len(content), r.usage)
assert "".join(t.token for t in content) == r.choices[0].message.content
for t in content:
    assert t.logprob <= 0 and len(t.top_logprobs) == 3, t
    assert bytes(t.bytes).decode() == t.token, t
    # Greedy: the chosen token is the most likely one.
    assert t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == t.logprob, t
    assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob
stream = client.chat.completions.create(
    model="base", messages=messages, max_tokens=8, temperature=0, logprobs=True, stream=True
)
streamed = [t for c in stream if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
assert [t.token for t in streamed] == [t.token for t in content], (streamed, content)
assert all(t.top_logprobs == [] for t in streamed)

step("completion logprobs")
r = client.completions.create(
    model="base", prompt=prompt, max_tokens=6, temperature=0, logprobs=2, extra_body={"ignore_eos": True}
)
lp = r.choices[0].logprobs
assert "".join(lp.tokens) == r.choices[0].text, lp
assert len(lp.token_logprobs) == 6 and all(x <= 0 for x in lp.token_logprobs), lp
assert all(2 <= len(top) <= 3 for top in lp.top_logprobs), lp
assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(6)], lp

step("n = 2")
r = client.chat.completions.create(
    model="base", messages=messages, max_tokens=8, temperature=1.0, seed=4, n=2, logprobs=True
)
assert [c.index for c in r.choices] == [0, 1], r.choices
assert r.usage.completion_tokens == sum(len(c.logprobs.content) for c in r.choices), r
assert all(c.message.content for c in r.choices), r.choices
texts = ["", ""]
for c in client.completions.create(
    model="base", prompt=prompt, max_tokens=6, temperature=0.8, n=2, stream=True
):
    for choice in c.choices:
        texts[choice.index] += choice.text
assert all(texts), texts

step("errors")
bad = [
    dict(model="base", messages=messages, logprobs=True, top_logprobs=21),
    dict(model="base", messages=messages, top_logprobs=2),
    dict(model="base", messages=messages, n=17),
    dict(model="base", messages=messages, temperature=5),
    dict(model="base", messages=messages, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}),
    dict(model="base", messages=messages, tools=tools, tool_choice={"type": "function", "function": {"name": "nope"}}),
    dict(model="base", messages=messages, tools=[{"type": "function", "function": {"name": "bad name!"}}]),
]
for kwargs in bad:
    try:
        client.chat.completions.create(max_tokens=2, **kwargs)
        raise AssertionError(f"accepted: {kwargs}")
    except openai.BadRequestError as e:
        assert e.status_code == 400, e
        assert e.body and e.body.get("message") and e.body.get("param"), e.body
try:
    client.completions.create(model="base", prompt=prompt, max_tokens=2, logprobs=6)
    raise AssertionError("logprobs=6 accepted")
except openai.BadRequestError as e:
    assert e.body["param"] == "logprobs", e.body
try:
    client.chat.completions.create(model="gpt-9", messages=messages, max_tokens=2)
    raise AssertionError("an unknown model answered")
except openai.NotFoundError as e:
    assert e.status_code == 404 and e.body["code"] == "model_not_found", e.body

step("all passed")
