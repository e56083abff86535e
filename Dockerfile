# labelcast: multi-stage build on the Node 24 LTS base. The agent ships as JavaScript compiled by tsc
# (npm run build → dist/): importing it takes about 25 MB less memory than running the TypeScript
# sources through Node's type stripping, whose WebAssembly memory is never given back.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Install scripts are not needed (ssh2/cpu-features are optional dockerode extras; the `node`
# devDependency is not used here, the base image's Node 24 is).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY agent ./agent
RUN npm run build

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-bookworm-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/labelcast/labelcast
ARG CREATED=unknown
ARG CONTACT=maintainers@labelcast.dev
# The agent carries the labels it asks everyone else to carry, and passes its own `labelcast inspect`.
LABEL org.opencontainers.image.title="labelcast" \
      org.opencontainers.image.description="Docker labels as OpenTelemetry resource attributes on container logs and traces" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.authors="${CONTACT}" \
      io.labelcast.contact="${CONTACT}"
# A young generation of at most 2 x 8 MB (V8 sizes it by the machine's memory, up to 2 x 64 MB here):
# log lines are short-lived garbage, and this keeps peak RSS about 60 MB lower at the same throughput.
ENV NODE_ENV=production \
    NODE_OPTIONS=--max-semi-space-size=8 \
    LABELCAST_STATE_DIR=/var/lib/labelcast
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json LICENSE ./
# dist/ holds the compiled agent/ and a copy of package.json (the agent imports it for its version).
COPY --from=build /app/dist ./dist
COPY config ./config
RUN mkdir -p /var/lib/labelcast && chown node:node /var/lib/labelcast
VOLUME ["/var/lib/labelcast"]
# Non-root by default. Reading the Docker socket needs its group (--group-add), and the json_file
# receiver needs read access to <docker root>/containers (see deploy/ for both set-ups).
USER node
EXPOSE 4318
ENTRYPOINT ["node", "/app/dist/agent/main.js"]
CMD ["run"]
