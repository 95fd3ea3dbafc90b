"""The Flask tutorial's MiniLM app (bench/tutorial_server.py: eager fp32 transformers) served by
waitress with 4 threads, as a user deploying it would (instead of Flask's development server).
    python -m bench.peers.tutorial_waitress --model <folder> --port 8090 [--threads 4]
"""

from __future__ import annotations

import argparse

from waitress import serve

from bench.tutorial_server import create_app

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--threads", type=int, default=4)
    a = p.parse_args()
    serve(create_app(a.model), host="127.0.0.1", port=a.port, threads=a.threads)
