from .app import main

# guarded: the import workers (spawned processes) import this module's package
if __name__ == "__main__":
    main()
