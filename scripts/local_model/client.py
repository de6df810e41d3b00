"""The official `openai` SDK against Maestra, for tests/local_model.rs. One JSON line out.

    python client.py BASE_URL MODEL plain|stream|abandon|overflow [N]

plain     a whole answer: its text, finish reason and usage
stream    a streamed answer: its text, chunk count, finish reason and usage (if sent)
abandon   a streamed answer with a large max_tokens, left after N text chunks: the SDK
          closes the response, so the connection to Maestra closes mid-stream
overflow  a prompt of N words (one token each with the test model): the error
overflow_stream  the same, streamed
tool      a forced function call (tool_choice names it): the call's name and arguments
tool_stream  the same, streamed, reassembled by the SDK's `chat.completions.stream` helper
"""

import json
import sys
import time

import openai
from openai import OpenAI

base, model, mode = sys.argv[1], sys.argv[2], sys.argv[3]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 0
# Generous timeouts (a loaded CI machine), and never a retry: a retried call would hide what
# the first one did.
c = OpenAI(base_url=base, api_key="unused-locally", max_retries=0, timeout=120)
ask = [{"role": "user", "content": "Say something."}]
out = {}

if mode == "plain":
    r = c.chat.completions.create(model=model, messages=ask, max_tokens=12)
    out = {
        "model": r.model,
        "content": r.choices[0].message.content,
        "finish_reason": r.choices[0].finish_reason,
        "usage": r.usage.model_dump() if r.usage else None,
    }
elif mode == "stream":
    s = c.chat.completions.create(
        model=model,
        messages=ask,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, chunks, finish, usage = "", 0, None, None
    for ch in s:
        chunks += 1
        if ch.choices:
            text += ch.choices[0].delta.content or ""
            finish = ch.choices[0].finish_reason or finish
        if ch.usage:
            usage = ch.usage.model_dump()
    out = {"content": text, "chunks": chunks, "finish_reason": finish, "usage": usage}
elif mode == "abandon":
    s = c.chat.completions.create(
        model=model, messages=ask, max_tokens=100000, stream=True
    )
    got = 0
    for ch in s:
        if ch.choices and ch.choices[0].delta.content:
            got += 1
            if got >= n:
                break
    s.close()
    out = {"chunks_read": got, "left_at": time.time()}
elif mode == "overflow":
    long = " ".join(["a"] * n)
    try:
        r = c.chat.completions.create(
            model=model, messages=[{"role": "user", "content": long}], max_tokens=8
        )
        out = {"status": 200, "content": r.choices[0].message.content}
    except openai.APIStatusError as e:
        out = {"status": e.status_code, "body": e.response.json()}
elif mode == "overflow_stream":
    long = " ".join(["a"] * n)
    try:
        s = c.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": long}],
            max_tokens=8,
            stream=True,
        )
        text = "".join(
            (ch.choices[0].delta.content or "") for ch in s if ch.choices
        )
        out = {"status": 200, "content": text}
    except openai.APIStatusError as e:
        out = {"status": e.status_code, "body": e.response.json()}
    except openai.APIError as e:
        # An error event inside a stream that had begun (the SDK raises it as it reads).
        out = {"status": 200, "stream_error": e.message, "body": e.body}
elif mode in ("tool", "tool_stream"):
    # An enum-only schema: the server's grammar can write nothing but a complete call, even
    # from the test model's random weights.
    tools = [
        {
            "type": "function",
            "function": {
                "name": "set_unit",
                "description": "Set the temperature unit.",
                "parameters": {
                    "type": "object",
                    "properties": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                    "required": ["unit"],
                },
            },
        }
    ]
    choice = {"type": "function", "function": {"name": "set_unit"}}
    kw = dict(model=model, messages=ask, max_tokens=64, tools=tools, tool_choice=choice)
    if mode == "tool":
        r = c.chat.completions.create(**kw)
    else:
        with c.chat.completions.stream(**kw) as s:
            r = s.get_final_completion()
    m = r.choices[0].message
    out = {
        "finish_reason": r.choices[0].finish_reason,
        "calls": [
            {"id": t.id, "name": t.function.name, "arguments": t.function.arguments}
            for t in (m.tool_calls or [])
        ],
    }
else:
    sys.exit(f"unknown mode {mode}")

print(json.dumps(out))
