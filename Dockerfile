# zooeval batch service. Two images from one file:
#   runtime (default): the service, as a non-root user, with no tests or benchmarks
#       docker build -t zooeval .            docker run -v zooeval-data:/data zooeval run
#   test: the runtime plus the tests, the benchmarks and their extras
#       docker build --target test -t zooeval-test .   docker run zooeval-test
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
COPY --chown=10001:10001 tests ./tests
COPY --chown=10001:10001 benchmarks ./benchmarks
COPY --chown=10001:10001 Dockerfile ./
RUN make install VENV=/opt/zooeval/venv
ENTRYPOINT ["make", "VENV=/opt/zooeval/venv"]
CMD ["test"]
