import Router from '@koa/router';
import type { Middleware } from 'koa';

/**
 * Every route, in one router per path prefix (each API family's, and the root for the rest), so a
 * request is matched against the routes under its own prefix only: a router tests each of its
 * routes against every request it sees, and the families together have about 25.
 *
 * Prefixes never nest, and no root route spans more than one path segment, so which router a path
 * goes to never changes which route it matches.
 */
export class Routes {
  readonly root = new Router();
  private readonly prefixed = new Map<string, Router>();
  /** `prefixed` with the pattern of each prefix's paths, made once every route is added. */
  private prefixes: (readonly [RegExp, Router])[] | undefined;

  /** The router of the paths under `prefix` (the prefix itself included); `''` is the root. */
  under(prefix: string): Router {
    if (prefix === '') return this.root;
    let router = this.prefixed.get(prefix);
    if (router === undefined) {
      router = new Router();
      this.prefixed.set(prefix, router);
    }
    return router;
  }

  /** Every router, for what must look at all routes (which methods a path allows). */
  all(): Router[] {
    return [this.root, ...this.prefixed.values()];
  }

  /**
   * The route a request would be matched to (what Koa's router leaves in `ctx._matchedRoute`), for
   * one that never reached the routers: the family it is counted under depends on it.
   */
  routeOf(path: string, method: string): string | RegExp | undefined {
    const prefixed = this.byPrefix().find(([under]) => under.test(path));
    const match = (prefixed?.[1] ?? this.root).match(path, method);
    return match.route ? match.pathAndMethod.at(-1)?.path : undefined;
  }

  /**
   * Hands each request to the router of its prefix. Built once every route is added. The prefix is
   * compared without regard to case, as the routers compare their routes.
   */
  middleware(): Middleware {
    const root = this.root.routes() as Middleware;
    const prefixed = this.byPrefix().map(([under, router]) => [under, router.routes() as Middleware] as const);
    return (ctx, next) => {
      const path = ctx.path;
      for (const [under, routes] of prefixed) if (under.test(path)) return routes(ctx, next);
      return root(ctx, next);
    };
  }

  /** Each prefix's router beside the pattern of the paths under it. */
  private byPrefix(): (readonly [RegExp, Router])[] {
    return (this.prefixes ??= [...this.prefixed].map(
      ([prefix, router]) => [new RegExp(`^${escapeRegExp(prefix)}(?:/|$)`, 'i'), router] as const,
    ));
  }
}

export const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
