# zooeval batch service. Build needs PyPI; the image runs offline against local zoos and the embedded mongod.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends make gcc libcurl4 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/zooeval
COPY pyproject.toml Makefile README.md ./
COPY core ./core
COPY pipeline ./pipeline
COPY service ./service
COPY demo ./demo
COPY modules ./modules
COPY processors ./processors
COPY perturbations ./perturbations
COPY scraper ./scraper
COPY tests ./tests
COPY benchmarks ./benchmarks
RUN make install VENV=/opt/venv
# HF_HUB_OFFLINE is not set: `zooeval scrape --source huggingface` needs the Hub (the demo sets it for itself)
ENV PATH=/opt/venv/bin:$PATH ZOOEVAL_HOME=/data
VOLUME /data
ENTRYPOINT ["zooeval"]
CMD ["demo"]
