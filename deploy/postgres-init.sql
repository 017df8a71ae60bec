-- One database per service (each service migrates its own on start).
CREATE DATABASE journeygraph_journey;
CREATE DATABASE journeygraph_feedback;
CREATE DATABASE journeygraph_scoring;
