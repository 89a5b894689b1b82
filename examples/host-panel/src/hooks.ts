import type {
  HookBus,
  HookHandler,
  HookName,
  HookPayloads,
  Logger,
  PluginEventName,
  PluginEventPayloads,
  ValidationIssue,
} from '../../../src/plugin-api.js';

/** The hooks after a write that plugins must follow: when one of their handlers fails, the host undoes the write. */
export type FollowedHook = 'peer.created' | 'peer.updated' | 'vm.created' | 'vm.updated' | 'network.created' | 'network.updated';
/** The hooks that check an input before the host writes it (`network.validate` since host API 1.4.0). */
export type ValidateHook = Extract<HookName, `${string}.validate`>;
/** The hooks that add fields to records before the host shows them (`network.serialize` since host API 1.4.0). */
export type SerializeHook = Extract<HookName, `${string}.serialize`>;
/** The hooks that tell about a write: everything but validate and serialize. */
export type NoticeHook = Exclude<HookName, ValidateHook | SerializeHook>;

/**
 * A handler of a {@link FollowedHook} threw. The handler must have written nothing (docs/integration.md,
 * "When a hook fails"); `followed` names the plugins whose handler had already run, which the host
 * tells about the undo. `cause` keeps the handler's error.
 */
export class HookFailedError extends Error {
  override name = 'HookFailedError';
  constructor(
    readonly hook: FollowedHook,
    readonly pluginId: string,
    readonly followed: string[],
    options: { cause: unknown },
  ) {
    super(`hook ${hook} of plugin ${pluginId} failed: ${(options.cause as Error | undefined)?.message ?? String(options.cause)}`, options);
  }
}

interface Subscription {
  pluginId: string;
  name: HookName;
  handler: HookHandler<HookName>;
}

/** Host code told about a plugin's own event; `pluginId` is the plugin that emitted it. */
export type PluginEventListener<K extends PluginEventName> = (payload: PluginEventPayloads[K], source: { pluginId: string }) => void | Promise<void>;

interface EventListening {
  name: PluginEventName;
  listener: PluginEventListener<PluginEventName>;
}

/** The host's hook bus: plugins subscribe through a scoped view; the host emits around its writes. */
export class HookRegistry {
  private subscriptions: Subscription[] = [];
  private listeners: EventListening[] = [];

  constructor(private readonly logger: Logger) {}

  /**
   * A bus for one plugin that accepts only the hooks its manifest declares in `hooks`, and emits
   * only the events it declares in `events` (host API 1.3.0).
   */
  forPlugin(pluginId: string, declared: readonly HookName[], events: readonly PluginEventName[] = []): HookBus & { removeAll(): void } {
    return {
      on: <K extends HookName>(name: K, handler: HookHandler<K>) => {
        if (!declared.includes(name)) {
          throw new TypeError(`Plugin \`${pluginId}\` subscribes to \`${name}\`, which its plugin.json "hooks" does not declare`);
        }
        const subscription = { pluginId, name, handler: handler as unknown as HookHandler<HookName> };
        this.subscriptions.push(subscription);
        return () => {
          this.subscriptions = this.subscriptions.filter((s) => s !== subscription);
        };
      },
      emit: <K extends PluginEventName>(name: K, payload: PluginEventPayloads[K]) => {
        if (!events.includes(name)) {
          throw new TypeError(`Plugin \`${pluginId}\` emits \`${String(name)}\`, which its plugin.json "events" does not declare`);
        }
        return this.deliver(pluginId, name, payload);
      },
      removeAll: () => {
        this.subscriptions = this.subscriptions.filter((s) => s.pluginId !== pluginId);
      },
    };
  }

  /**
   * Lets host code hear a plugin's own event (`bandwidth.quota.exceeded`, …) from every plugin that
   * declares it; returns a function that stops listening. Keep listeners quick: the plugin waits for
   * them before it goes on (their failures are logged, never thrown back at it).
   */
  onPluginEvent<K extends PluginEventName>(name: K, listener: PluginEventListener<K>): () => void {
    const listening: EventListening = { name, listener: listener as unknown as PluginEventListener<PluginEventName> };
    this.listeners.push(listening);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listening);
    };
  }

  /** Calls every listener of the event in turn; a listener that throws or rejects is logged and the next one still runs. */
  private async deliver<K extends PluginEventName>(pluginId: string, name: K, payload: PluginEventPayloads[K]): Promise<void> {
    for (const { listener } of this.listeners.filter((l) => l.name === name)) {
      try {
        await listener(payload, { pluginId });
      } catch (error) {
        this.logger.error(`a listener of ${name} from plugin ${pluginId} failed`, { error: (error as Error).message });
      }
    }
  }

  private handlers(name: HookName): Subscription[] {
    return this.subscriptions.filter((s) => s.name === name);
  }

  /** Runs every `*.validate` handler; returns all issues (empty: the input may be written). */
  async validate<K extends ValidateHook>(name: K, payload: HookPayloads[K]): Promise<ValidationIssue[]> {
    const issues: ValidationIssue[] = [];
    for (const { handler } of this.handlers(name)) {
      const result = (await handler(payload)) as ValidationIssue[] | void;
      if (Array.isArray(result)) issues.push(...result);
    }
    return issues;
  }

  /**
   * Tells every subscriber about a create or an update they must follow (a plugin stores its own
   * settings for the record, such as caps). Stops at the first handler that throws and throws a
   * {@link HookFailedError}: the caller undoes its write, tells the plugins in `followed` with
   * {@link emitTo} and answers an error, so a user never gets a success for settings that were not stored.
   */
  async follow<K extends FollowedHook>(name: K, payload: HookPayloads[K]): Promise<void> {
    const followed: string[] = [];
    for (const { pluginId, handler } of this.handlers(name)) {
      try {
        await handler(payload);
      } catch (error) {
        this.logger.error(`hook ${name} of plugin ${pluginId} failed; the write is undone`, { error: (error as Error).message });
        throw new HookFailedError(name, pluginId, followed, { cause: error });
      }
      followed.push(pluginId);
    }
  }

  /** Like {@link emit}, for the handlers of these plugins only (the undo after a {@link HookFailedError}). */
  async emitTo<K extends NoticeHook>(
    pluginIds: readonly string[],
    name: K,
    payload: HookPayloads[K],
  ): Promise<void> {
    for (const { pluginId, handler } of this.handlers(name).filter((s) => pluginIds.includes(s.pluginId))) {
      try {
        await handler(payload);
      } catch (error) {
        this.logger.error(`hook ${name} of plugin ${pluginId} failed`, { error: (error as Error).message });
      }
    }
  }

  /**
   * Tells every subscriber that a write happened. The write is already committed (a delete, a
   * network's interface), so a handler's failure is logged, never thrown back at the user.
   */
  async emit<K extends NoticeHook>(
    name: K,
    payload: HookPayloads[K],
  ): Promise<void> {
    for (const { pluginId, handler } of this.handlers(name)) {
      try {
        await handler(payload);
      } catch (error) {
        this.logger.error(`hook ${name} of plugin ${pluginId} failed`, { error: (error as Error).message });
      }
    }
  }

  /** Collects extra fields per record id from every `*.serialize` handler. */
  async serialize<K extends SerializeHook>(
    name: K,
    payload: HookPayloads[K],
  ): Promise<Map<number, Record<string, unknown>>> {
    const extra = new Map<number, Record<string, unknown>>();
    for (const { pluginId, handler } of this.handlers(name)) {
      try {
        const result = (await handler(payload)) as Record<number, Record<string, unknown>> | void;
        for (const [id, fields] of Object.entries(result ?? {})) {
          extra.set(Number(id), { ...extra.get(Number(id)), ...fields });
        }
      } catch (error) {
        this.logger.error(`hook ${name} of plugin ${pluginId} failed`, { error: (error as Error).message });
      }
    }
    return extra;
  }
}
