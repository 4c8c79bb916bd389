"""Allow ``python -m gemma_chat``."""

from gemma_chat._entry import main

if __name__ == "__main__":
    main()
