from imis_lite.cli.main import main

main()
