@_exported import TcpServer
