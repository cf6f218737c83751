# zooeval batch service. Three images from one file:
#   service (default, the last stage): the runtime, as a non-root user, with no tests or benchmarks
#       docker build -t zooeval .            docker run -v zooeval-data:/data zooeval run
#   test: the runtime plus the tests, the benchmarks and their extras (and Chromium for the browser tests)
#       docker build --target test -t zooeval-test .   docker run zooeval-test
#   ray-worker: the runtime plus Ray, for the nodes of a cluster running `zooeval run --executor ray` (docs/ray.md)
#       docker build --target ray-worker -t zooeval-ray-worker .
# Building needs PyPI; the images run offline against local zoos and the embedded mongod, or any Hub
# through HF_ENDPOINT / HF_TOKEN (HF_HUB_OFFLINE is not set: `zooeval scrape --source huggingface` needs it).

FROM python:3.11-slim-bookworm AS runtime
# make drives the install (the Makefile is the one list of what zooeval needs); gcc builds pycocotools;
# libcurl4 is what the embedded mongod links against
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends make gcc libcurl4 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 zooeval && mkdir -p /data /opt/zooeval && chown zooeval:zooeval /data /opt/zooeval
USER 10001:10001
WORKDIR /opt/zooeval
COPY --chown=10001:10001 pyproject.toml Makefile README.md ./
COPY --chown=10001:10001 core ./core
COPY --chown=10001:10001 cards ./cards
COPY --chown=10001:10001 tasks ./tasks
COPY --chown=10001:10001 modules ./modules
COPY --chown=10001:10001 processors ./processors
COPY --chown=10001:10001 perturbations ./perturbations
COPY --chown=10001:10001 scraper ./scraper
COPY --chown=10001:10001 pipeline ./pipeline
COPY --chown=10001:10001 service ./service
COPY --chown=10001:10001 demo ./demo
RUN make install-runtime VENV=/opt/zooeval/venv
ENV PATH=/opt/zooeval/venv/bin:$PATH ZOOEVAL_HOME=/data
VOLUME /data
ENTRYPOINT ["zooeval"]
CMD ["demo"]

FROM runtime AS test
# the browser tests drive the system Chromium through Playwright (no browser download)
USER 0:0
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends chromium fonts-liberation && rm -rf /var/lib/apt/lists/*
USER 10001:10001
COPY --chown=10001:10001 tests ./tests
COPY --chown=10001:10001 benchmarks ./benchmarks
COPY --chown=10001:10001 Dockerfile ./
RUN make install VENV=/opt/zooeval/venv
ENTRYPOINT ["make", "VENV=/opt/zooeval/venv"]
CMD ["test"]

# Ray worker (and head) nodes for `zooeval run --executor ray`: the runtime plus Ray at the cluster's version.
# The shared MongoDB comes with the work (ZOOEVAL_MONGO_URI of the driver); datasets and ZOOEVAL_HOME must be
# mounted at the same path as on the driver; the Hugging Face cache stays on the node's own disk.
FROM runtime AS ray-worker
RUN make install-ray VENV=/opt/zooeval/venv
ENV HF_HOME=/home/zooeval/.cache/huggingface RAY_USAGE_STATS_ENABLED=0
ENTRYPOINT []
CMD ["ray", "start", "--address=ray-head:6379", "--block"]

# the default image (`docker build .` builds the last stage): the service
FROM runtime AS service
