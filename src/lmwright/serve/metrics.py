"""Prometheus metrics in vLLM's style, with an `lmwright_` prefix, on a registry of the app's own.

Every request the engine accepted is counted once when it ends, whatever its end: `finished_reason` is "stop" or
"length" for a completed answer, "abort" when its client went away, "timeout" when the server stopped it, "error"
when the engine failed; its tokens count in `generation_tokens` either way (the work was done). Labels carry the
model's name and version (`model_name`, `version`), so a server with several models, or two versions of one in a
canary, keeps their figures apart. `routed` counts requests per deployment (the model id clients send) and the
version that answered; `deprecated` the requests that still reach a version in its deprecation period; `shadow`
the mirrored requests by outcome.

Latency histograms have buckets sized for language models: time to first token from 1 ms to 80 s, the gap
between tokens from 1 ms to 2.5 s, whole requests and queue time up to 10 minutes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4,
               0.5, 0.75, 1.0, 2.5)
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                   120.0, 240.0, 480.0, 600.0)


class ServeMetrics:
    def __init__(self):
        self.registry = r = CollectorRegistry()
        labels = ["model_name", "version"]
        self.ttft = Histogram("lmwright_time_to_first_token_seconds", "Time from arrival to the first output token.",
                              labels, buckets=TTFT_BUCKETS, registry=r)
        self.itl = Histogram("lmwright_inter_token_latency_seconds", "Time between two output tokens of a request.",
                             labels, buckets=ITL_BUCKETS, registry=r)
        self.e2e = Histogram("lmwright_e2e_request_latency_seconds", "Time from arrival to the last token.",
                             labels, buckets=REQUEST_BUCKETS, registry=r)
        self.queue = Histogram("lmwright_request_queue_time_seconds", "Time a request waited for a decode slot.",
                               labels, buckets=REQUEST_BUCKETS, registry=r)
        self.prompt_tokens = Counter("lmwright_prompt_tokens", "Prompt tokens processed.", labels, registry=r)
        self.generation_tokens = Counter("lmwright_generation_tokens", "Output tokens generated.", labels, registry=r)
        self.running = Gauge("lmwright_num_requests_running", "Requests being decoded.", labels, registry=r)
        self.waiting = Gauge("lmwright_num_requests_waiting", "Requests waiting for a decode slot.", labels,
                             registry=r)
        self.success = Counter("lmwright_request_success", "Finished requests by finish reason.",
                               [*labels, "finished_reason"], registry=r)
        self.http = Counter("lmwright_http_requests", "HTTP responses by route and status code.",
                            ["route", "status"], registry=r)
        self.routed = Counter("lmwright_routed_requests", "Requests by deployment and the version routed to.",
                              ["deployment", "model_name", "version"], registry=r)
        self.deprecated = Counter("lmwright_deprecated_requests", "Requests that reached a version being retired.",
                                  labels, registry=r)
        # speculative decoding (serve.speculative): acceptance rate = accepted / draft tokens (guesses examined);
        # each check makes accepted + 1 tokens, so tokens per check = (accepted + checks) / checks
        self.spec_checks = Counter("lmwright_spec_decode_checks", "Passes that checked a request's guesses.", labels,
                                   registry=r)
        self.spec_draft = Counter("lmwright_spec_decode_draft_tokens", "Tokens guessed by the drafter.", labels,
                                  registry=r)
        self.spec_accepted = Counter("lmwright_spec_decode_accepted_tokens", "Guessed tokens the model kept.",
                                     labels, registry=r)
        self.shadow = Counter("lmwright_shadow_requests", "Mirrored requests by outcome (done, skipped, failed).",
                              [*labels, "outcome"], registry=r)

    def finished(self, req, model: str, version: str, reason: str | None) -> None:
        """Record one engine request (see engine.Request) of `model` at `version` that ended for `reason`."""
        m = (model, version)
        self.prompt_tokens.labels(*m).inc(len(req.prompt_ids))
        self.generation_tokens.labels(*m).inc(len(req.output_ids))
        if req.scheduled is not None:
            self.queue.labels(*m).observe(req.scheduled - req.arrived)
        if req.first_token is not None:
            self.ttft.labels(*m).observe(req.first_token - req.arrived)
            self.e2e.labels(*m).observe(req.token_times[-1] - req.arrived)
        for a, b in zip(req.token_times, req.token_times[1:], strict=False):
            self.itl.labels(*m).observe(b - a)
        self.success.labels(*m, reason or "abort").inc()
        if req.checks:
            self.spec_checks.labels(*m).inc(req.checks)
            self.spec_draft.labels(*m).inc(req.drafted)
            self.spec_accepted.labels(*m).inc(req.accepted)
