from posegen.cli import main

main()
