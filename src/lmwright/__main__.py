from lmwright.cli import main

main()
