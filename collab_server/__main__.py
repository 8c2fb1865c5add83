from collab_server.launch import main

main()
