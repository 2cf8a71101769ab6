from procctl.entry import main

main()
