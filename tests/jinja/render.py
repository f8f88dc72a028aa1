"""Reference renderer: Python's Jinja2 SandboxedEnvironment, as NetBox renders webhook templates.

Reads {"context": {...}, "templates": ["...", ...]} on stdin; writes a JSON list with
{"ok": output} or {"error": message} for each template.
"""
import json
import sys

from jinja2.sandbox import SandboxedEnvironment


def main():
    job = json.load(sys.stdin)
    env = SandboxedEnvironment()
    out = []
    for source in job["templates"]:
        try:
            out.append({"ok": env.from_string(source).render(**job["context"])})
        except Exception as exc:  # report, the Rust side compares
            out.append({"error": f"{type(exc).__name__}: {exc}"})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
