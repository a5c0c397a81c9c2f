# syntax=docker/dockerfile:1

# Build stage: dev dependencies and the TypeScript compiler never reach the runtime image.
ARG NODE_VERSION=20.20
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# Runtime stage: Node, the compiled service, production dependencies, and tini as PID 1 (it
# forwards SIGTERM to Node and reaps zombies, so the graceful drain runs on `docker stop`).
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
# No HOST: the server then binds every address the node has (IPv6 and IPv4, or IPv4 alone), so
# the same image gets ready on IPv4, dual-stack and IPv6-only clusters.
ENV NODE_ENV=production \
    PORT=8080
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The image's unprivileged `node` user, by number so Kubernetes can verify runAsNonRoot. Nothing is
# written to disk at run time, so the root filesystem can be mounted read-only.
USER 1000:1000
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/main.js"]
