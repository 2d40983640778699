from meshops.cli import main

main()
