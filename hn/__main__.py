from hn.cli.app import main

main()
