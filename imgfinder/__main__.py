from imgfinder.cli import main

main()
