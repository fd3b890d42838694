# The detection runtime as an image (`docker build -t logad .`): the client and what it needs,
# no torch. `--build-arg EXTRAS=train` adds training (torch, the exporters) for the retrain Job.
# The entry point is the CLI: `docker run logad detect ... --url triton:8001`.
FROM python:3.11-slim
ARG EXTRAS=""
WORKDIR /app
COPY pyproject.toml README.md ./
COPY client client
COPY export export
COPY server_config server_config
COPY benchmarks benchmarks
RUN pip install --no-cache-dir ".${EXTRAS:+[${EXTRAS}]}"
USER 1000
ENTRYPOINT ["logad"]
