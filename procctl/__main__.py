from procctl.cli import main

main()
