#!/usr/bin/env python3
"""Chat templates rendered by `transformers`' apply_chat_template renderer, for the Swift Jinja subset.

The templates: the ChatML template of the tiny MiniCPM-o mirror (as in its tokenizer_config.json),
Qwen2.5-Instruct's and MiniCPM-V 2.6's templates restated from their published structure (the real
files could not be read here), and one template that exercises the other constructs chat templates use.

    python tools/reference/chat_templates.py   # writes Tests/Fixtures/chat_templates/cases.json
"""
import json
import pathlib

from transformers.utils.chat_template_utils import render_jinja_template

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "chat_templates" / "cases.json"

MIRROR = json.loads((ROOT / "Tests/Fixtures/models/tiny-minicpmo/tokenizer_config.json").read_text())["chat_template"]

QWEN25 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

MINICPMV26 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
              "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
              "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

CONSTRUCTS = """{# comments vanish #}
{%- set ns = namespace(last_user=-1, greeting="hi") %}
{%- for m in messages %}
  {%- if m.role == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}
{%- endfor %}
{%- for m in messages -%}
  [{{ loop.index }}/{{ loop.length }}{{ ' first' if loop.first }}{{ ' last' if loop.last else '' }}] {{ m.role | upper }}:
  {%- if m.content is string and m.content.strip().startswith('#') %} heading{% endif %}
  {{ m.content | trim | tojson }} {{ (m.content | length) > 5 }} {{ m.role in ['user', 'assistant'] }} {{ 'x' not in m.content }}
  {%- if loop.index0 == ns.last_user %} <- last user{% endif %}
  {% if m.name is defined %}name={{ m.name ~ '!' }}{% elif m.role == 'system' %}sys{% else %}-{% endif %}
{% endfor -%}
{{ ns.greeting ~ ' ' ~ ((messages | length) * 2 - 1) ~ 'x' ~ 3 * 2 }} {{ messages[-1]['role'] }} {{ {'a': [1, 2.5, none, true], 'b': "q\\"t"} | tojson }}
{%- if add_generation_prompt %}
<go>{% endif %}
"""

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"}],
    [{"role": "user", "content": "Write \"quotes\", a\nnewline, tabs\tand ünïcödé 漢字 🙂"},
     {"role": "assistant", "content": "Done: {x} <b> & 'y'"}, {"role": "user", "content": "  # again  "}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
     {"role": "system", "content": "late system"}, {"role": "user", "content": "", "name": "bob"}],
]
TOOL_CONVERSATION = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
    {"role": "tool", "content": "{\"temp\": 21}"},
    {"role": "tool", "content": "sunny"},
    {"role": "assistant", "content": "It is 21 degrees."},
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def main():
    templates = {"minicpmo-mirror": MIRROR, "qwen2.5": QWEN25, "minicpm-v-2_6": MINICPMV26, "constructs": CONSTRUCTS}
    cases = []
    for name, template in templates.items():
        convs = [(c, None) for c in CONVERSATIONS]
        if name == "qwen2.5":
            convs += [(TOOL_CONVERSATION, None), (TOOL_CONVERSATION[:1], TOOLS)]
        for conversation, tools in convs:
            for gen in (True, False):
                rendered, _ = render_jinja_template(conversations=[conversation], tools=tools, chat_template=template,
                                                    add_generation_prompt=gen)
                cases.append({"template": name, "messages": conversation, "tools": tools, "add_generation_prompt": gen,
                              "rendered": rendered[0]})
    OUT.write_text(json.dumps({"templates": templates, "cases": cases}, ensure_ascii=False, indent=1) + "\n")
    print(len(cases), "cases")


if __name__ == "__main__":
    main()
