// Runs an async action at most once at a time: callers that arrive while it runs share its result.
// The restart command uses it so that two quick restarts cannot start two servers.

export class SingleFlight {
    private running: Promise<void> | undefined;

    /** Start `action` unless one is running; either way return the running promise. */
    run(action: () => Promise<void>): Promise<void> {
        this.running ??= action().finally(() => {
            this.running = undefined;
        });
        return this.running;
    }

    get busy(): boolean {
        return this.running !== undefined;
    }
}
