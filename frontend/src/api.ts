/** REST v1 calls with the page's cookie and XSRF token. */
import type { PageConfig } from "./config";

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

export class Api {
  constructor(private cfg: PageConfig) {}

  url(path: string): string {
    const base = this.cfg.base_url.endsWith("/") ? this.cfg.base_url : this.cfg.base_url + "/";
    return base + path;
  }

  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    // JupyterHub checks the XSRF token on every cookie-authenticated fetch (not only state changes)
    headers["X-XSRFToken"] = this.cfg.xsrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(this.url(path), {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    let data: unknown = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!resp.ok) {
      const err = (data ?? {}) as { code?: string; message?: string };
      throw new ApiError(resp.status, err.code ?? "error", err.message ?? `${resp.status} ${resp.statusText}`);
    }
    return data as T;
  }
}
