# sensorpipe: one image, every component. The command picks the component:
#   docker run sensorpipe broker | ingest | display | sim | start
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# npm ci runs `prepare`, which builds the dashboard (display/web → display/web/dist): its sources must be here.
COPY display/web ./display/web
RUN npm ci --omit=dev --no-audit --no-fund
COPY core ./core
COPY store ./store
COPY broker ./broker
COPY ingest ./ingest
COPY display ./display
COPY firmware-sim ./firmware-sim
COPY cli ./cli
# /registry too: docker-compose.yml mounts a named volume there, and a new named volume takes the owner of
# the image's folder; root-owned, `sensorpipe sim` (demo mode) and `devices add` could not write the registry.
RUN useradd --system --uid 10001 sensorpipe && mkdir -p /data /registry && chown sensorpipe /data /registry
USER sensorpipe
ENV SENSORPIPE_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["node", "cli/bin.js"]
CMD ["start"]
