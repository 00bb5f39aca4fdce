# sensorpipe: one image, every component. The command picks the component:
#   docker run sensorpipe broker | ingest | display | sim | start
# Two stages: the first compiles the TypeScript (`npm run build` → dist/, the dashboard bundled into it);
# the image holds only dist/ and the production dependencies, and runs dist/cli/main.js with plain Node
# (no tsx, no compiler). Node 24 LTS (supported to April 2028): Node 20, which the code still runs on in
# development, reached end of life in April 2026.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# npm ci runs `prepare`, which builds the dashboard (display/web → display/web/dist): its sources must be here.
COPY display/web ./display/web
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json build.ts ./
COPY core ./core
COPY store ./store
COPY broker ./broker
COPY ingest ./ingest
COPY display ./display
COPY firmware-sim ./firmware-sim
COPY admin ./admin
COPY cli ./cli
RUN npm run build

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# Production dependencies only; no scripts: `prepare` builds the dashboard, which dist/ already holds.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# /registry too: docker-compose.yml mounts a named volume there, and a new named volume takes the owner of
# the image's folder; root-owned, `sensorpipe sim` (demo mode) and `devices add` could not write the registry.
RUN useradd --system --uid 10001 sensorpipe && mkdir -p /data /registry && chown sensorpipe /data /registry
USER sensorpipe
ENV SENSORPIPE_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["start"]
