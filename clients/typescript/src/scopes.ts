/**
 * Whether the `granted` scopes cover `needed`: an exact match, `*`, or a `family:*`
 * wildcard covering `family:anything` (longer than `family:`). Wildcards count only in
 * what is granted: asking for `keys:*` needs `keys:*` (or `*`) granted. The server's
 * rule (`keyhaven_core::policy::scopes_grant`).
 */
export function scopesGrant(granted: readonly string[], needed: string): boolean {
  for (const g of granted) {
    if (g === needed || g === "*") return true;
    if (g.endsWith(":*")) {
      const family = g.slice(0, -1);
      if (needed.length > family.length && needed.startsWith(family)) return true;
    }
  }
  return false;
}

/** Whether `granted` covers every scope in `needed`. */
export function scopesCover(granted: readonly string[], needed: readonly string[]): boolean {
  for (const n of needed) if (!scopesGrant(granted, n)) return false;
  return true;
}
