"""The naive way to serve a fitted pipeline: one FastAPI endpoint calling ``predict`` per request.

The baseline of ``bench_serve.py``, written the way a user writes it from the FastAPI
tutorial: the pipeline is loaded with joblib at start-up, ``POST /predict`` takes
``{"texts": [...]}`` and answers ``{"predictions": [...]}`` from a plain ``def`` endpoint
(FastAPI runs it in its thread pool, so concurrent requests call ``predict`` concurrently
on one shared pipeline), one uvicorn worker, no batching across requests, no warm-up.
``GET /health`` answers 200 once the pipeline is loaded.

Run: ``python benchmarks/_naive_server.py MODEL.joblib --port 8000``.
"""

import argparse

import joblib
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class Texts(BaseModel):
    texts: list[str]


def make_app(model_path):
    pipeline = joblib.load(model_path)
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: Texts):
        return {"predictions": pipeline.predict(body.texts).tolist()}

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a pipeline saved with joblib.dump")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(make_app(args.model), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
