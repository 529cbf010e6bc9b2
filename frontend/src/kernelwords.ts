/**
 * The kernel picker's shapes and words: the `kernel` status, the `kernel_resources`
 * listing and `server_progress` messages (docs/kernels.md), read from the wire and
 * put into plain words ("python3 · on alice's server · idle"). Pure functions, no DOM;
 * the dialog is in kernelpicker.ts.
 */

export type KernelMode = "shared" | "per-user";
export type ResourceKind = "server" | "gateway" | "local";
export type ResourceState = "ready" | "pending" | "stopped" | "unknown";

export interface KernelSpec {
  name: string;
  display_name: string;
  language: string;
}

/** One place a kernel may run, as `kernel_resources` lists it. */
export interface ResourceEntry {
  resource: string;
  kind: ResourceKind;
  server?: string;
  label: string;
  state: ResourceState;
  pending?: "spawn" | "stop" | null;
  /** null for a stopped server: start it to see them */
  kernelspecs: KernelSpec[] | null;
  default_kernel: string | null;
  error?: string;
}

/** The ack of `kernel_resources`: what the user may pick from, and what they use. */
export interface Listing {
  default: string;
  resources: ResourceEntry[];
  kernel_mode: KernelMode;
  resource: string;
  kernel_name: string;
  may_choose: boolean;
  owner: string;
}

/** Another kernel the user keeps (switching back finds its state). */
export interface KeptKernel {
  resource: string;
  kernel_name: string;
  state: string;
  busy: boolean;
}

/** The `kernel` message: the kernel the user's runs go to. */
export interface KernelStatus {
  state: string;
  kernel_name: string;
  kernel_mode: KernelMode;
  resource: string;
  where: string;
  kept: KeptKernel[];
  message?: string;
}

/** A `server_progress` message while one of the user's servers starts. */
export interface ServerProgress {
  resource: string;
  progress: number | null;
  message: string;
  ready: boolean;
  failed: boolean;
}

export interface ResourceGroup {
  title: string;
  entries: ResourceEntry[];
}

const str = (v: unknown, fallback = ""): string => (typeof v === "string" ? v : fallback);
const mode = (v: unknown): KernelMode => (v === "per-user" ? "per-user" : "shared");

function keptFrom(v: unknown): KeptKernel[] {
  if (!Array.isArray(v)) return [];
  return v.map((k: Record<string, unknown>) => ({ resource: str(k.resource), kernel_name: str(k.kernel_name), state: str(k.state, "unknown"), busy: k.busy === true }));
}

/** A {@link KernelStatus} from a `kernel` message (or a `status` in an ack). */
export function kernelStatusFrom(m: Record<string, unknown>): KernelStatus {
  const status: KernelStatus = {
    state: str(m.state, "unknown"),
    kernel_name: str(m.kernel_name, "kernel"),
    kernel_mode: mode(m.kernel_mode),
    resource: str(m.resource),
    where: str(m.where),
    kept: keptFrom(m.kept),
  };
  if (typeof m.message === "string" && m.message) status.message = m.message;
  return status;
}

/** A {@link Listing} from the `resources` field of the `kernel_resources` ack. */
export function listingFrom(v: unknown): Listing {
  const m = (v && typeof v === "object" ? v : {}) as Record<string, unknown>;
  return {
    default: str(m.default),
    resources: Array.isArray(m.resources) ? (m.resources as ResourceEntry[]) : [],
    kernel_mode: mode(m.kernel_mode),
    resource: str(m.resource),
    kernel_name: str(m.kernel_name),
    may_choose: m.may_choose === true,
    owner: str(m.owner),
  };
}

/** A {@link ServerProgress} from a `server_progress` message. */
export function serverProgressFrom(m: Record<string, unknown>): ServerProgress {
  const p = typeof m.progress === "number" && Number.isFinite(m.progress) ? Math.max(0, Math.min(100, Math.round(m.progress))) : null;
  return { resource: str(m.resource), progress: p, message: str(m.message), ready: m.ready === true, failed: m.failed === true };
}

/** A kernel state in words ("shutdown" means none runs: not started yet, or shut down). */
export function stateWords(state: string): string {
  return state === "shutdown" ? "not running" : state;
}

/** The kernel status button's text: "python3 · on alice's server · idle · shared". */
export function statusText(s: KernelStatus): string {
  return [s.kernel_name, s.where, stateWords(s.state), s.kernel_mode].filter(Boolean).join(" · ");
}

/** What a kernel mode means, in one sentence. */
export function modeWords(m: KernelMode): string {
  return m === "per-user" ? "per-user: each person runs their own kernel and sees their own outputs" : "shared: one kernel for everyone, where the owner puts it";
}

/** A resource's state in words: "running", "starting…", "stopped". */
export function resourceStateWords(e: ResourceEntry): string {
  if (e.pending === "spawn") return "starting…";
  if (e.pending === "stop") return "stopping…";
  if (e.state === "ready") return e.kind === "server" ? "running" : "ready";
  if (e.state === "stopped") return "stopped";
  if (e.state === "pending") return "busy starting or stopping";
  return "state unknown";
}

const STATE_ORDER: Record<ResourceState, number> = { ready: 0, pending: 1, stopped: 2, unknown: 3 };

/**
 * The resources in the picker's groups, in order: your default server, your named
 * servers (running ones first), the kernel gateway, the service itself. Empty
 * groups are left out.
 */
export function groupResources(resources: ResourceEntry[]): ResourceGroup[] {
  const named = resources.filter((e) => e.kind === "server" && e.server);
  named.sort((a, b) => STATE_ORDER[a.state] - STATE_ORDER[b.state] || str(a.server).localeCompare(str(b.server)));
  const groups: ResourceGroup[] = [
    { title: "Your server", entries: resources.filter((e) => e.kind === "server" && !e.server) },
    { title: "Your named servers", entries: named },
    { title: "The kernel gateway", entries: resources.filter((e) => e.kind === "gateway") },
    { title: "This service", entries: resources.filter((e) => e.kind === "local") },
  ];
  return groups.filter((g) => g.entries.length > 0);
}

/** A kernelspec for a select option: "Python 3 (python3)". */
export function specLabel(spec: KernelSpec): string {
  return spec.display_name && spec.display_name !== spec.name ? `${spec.display_name} (${spec.name})` : spec.name;
}

/** The kernelspec to preselect on a resource: the one in use there, else its default, else the first. */
export function initialSpec(entry: ResourceEntry, current: { resource: string; kernel_name: string } | null): string {
  const specs = entry.kernelspecs ?? [];
  const has = (name: string | null | undefined): name is string => !!name && specs.some((s) => s.name === name);
  if (current && current.resource === entry.resource && has(current.kernel_name)) return current.kernel_name;
  if (has(entry.default_kernel)) return entry.default_kernel;
  return specs[0]?.name ?? "";
}

/** False while the shared kernel waits for the owner to choose a server ("nowhere yet: …", docs/kernels.md). */
export function placeChosen(s: { where: string }): boolean {
  return !s.where.startsWith("nowhere yet");
}

/** True if picking this resource needs the owner's explicit consent (a server for the shared kernel). */
export function needsConsent(listing: Listing, entry: ResourceEntry): boolean {
  return listing.kernel_mode === "shared" && entry.kind === "server";
}

/** What the owner agrees to by putting the shared kernel on their server, in plain words. */
export function consentWords(owner: string, entry: ResourceEntry): string {
  return `I agree: everyone who may run this notebook's cells will run code as me, ${owner}, on ${entry.label}, with my files and my rights there.`;
}

/** A server start's progress in words: "42% · Spawning server…". */
export function progressText(p: ServerProgress | null): string {
  if (!p) return "Starting…";
  const parts = [p.progress === null ? "" : `${p.progress}%`, p.message || (p.ready ? "ready" : "starting…")];
  return parts.filter(Boolean).join(" · ");
}

/** Where a resource is, by its listing label when known ("the service (not isolated)"). */
export function resourceName(resource: string, resources: ResourceEntry[]): string {
  const entry = resources.find((e) => e.resource === resource);
  if (entry) return entry.label;
  if (resource === "server:") return "your default server";
  if (resource.startsWith("server:")) return `server '${resource.slice("server:".length)}'`;
  return resource;
}

/** A kept kernel in words: "python3 on the service (not isolated) · idle". */
export function keptText(k: KeptKernel, resources: ResourceEntry[]): string {
  return `${k.kernel_name} on ${resourceName(k.resource, resources)} · ${stateWords(k.state)}${k.busy ? " (running a cell)" : ""}`;
}

/** An error of an action, for the dialog: "Could not switch: <the server's message>". */
export function failureText(action: string, err: { code?: string; message?: string }): string {
  const message = err.message || err.code || "unknown error";
  return `${action}: ${message}`;
}
