import sys

try:
    from race.cli import main

    code = main()
except KeyboardInterrupt:  # Ctrl-C while the CLI still imports: one line, no traceback
    print("interrupted", file=sys.stderr)
    code = 130
sys.exit(code)
