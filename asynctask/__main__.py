from asynctask.cli import main

main()
