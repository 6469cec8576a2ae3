"""API keys are sent to the server and nowhere else: not printed, logged, cached or written."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import run_cli
from llm_server import start_server

KEY = "sk-SECRET-d41d8cd98f00b204e980"


class EchoingServer:
    """Refuses every request with a 401 that echoes the Authorization header, as a careless proxy might."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def _refuse(self):
                seen.append(self.headers.get("Authorization"))
                body = json.dumps({"error": {"message": f"Incorrect API key provided: {self.headers.get('Authorization')}",
                                             "type": "invalid_request_error"}}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _refuse

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def request_file(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"query": {"qid": "q", "text": "fleas"}, "candidates": [
        {"docid": f"d{i}", "doc": f"passage {i}"} for i in range(5)]}) + "\n")
    return path


@pytest.mark.parametrize("from_file", [False, True])
def test_a_server_echoing_the_key_never_gets_it_printed(tmp_path, from_file):
    server = EchoingServer()
    try:
        key_file = tmp_path / "key.txt"
        key_file.write_text(KEY + "\n")
        args = ["run", request_file(tmp_path), "-o", tmp_path / "o.jsonl", "--model", "m", "--base-url",
                server.base_url, "--no-cache", "--verbose"]
        proc = run_cli(*args, *(["--api-key-file", key_file] if from_file else []),
                       env={"OPENAI_API_KEY": "" if from_file else KEY})
    finally:
        server.close()
    assert server.seen and all(header == f"Bearer {KEY}" for header in server.seen)  # the key is really sent
    assert proc.returncode == 3 and "HTTP 401" in proc.stderr and "***" in proc.stderr
    assert KEY not in proc.stderr and KEY not in proc.stdout


def test_verbose_logs_outputs_and_cache_hold_no_key(dl19, tmp_path):
    with start_server("oracle", data_dir=dl19, fail_rate=0.3, seed=3) as server:
        proc = run_cli("run", dl19 / "bm25_top100.json", "-o", tmp_path / "o.jsonl", "--trec", tmp_path / "o.trec",
                       "--model", "m", "--base-url", server.base_url, "--cache", tmp_path / "c.sqlite",
                       "--summary-json", tmp_path / "s.json", "--verbose", "--max-attempts", 15,
                       env={"OPENAI_API_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    assert "retrying" in proc.stderr and "window of 20" in proc.stderr  # the log really logs
    assert KEY not in proc.stderr and KEY not in proc.stdout
    for name in ("o.jsonl", "o.trec", "s.json", "c.sqlite", "c.sqlite-wal"):
        path = tmp_path / name
        if path.exists():
            assert KEY.encode() not in path.read_bytes(), name
