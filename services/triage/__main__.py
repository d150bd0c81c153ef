from triage.app import main

main()
