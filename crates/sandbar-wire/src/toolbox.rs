//! Toolbox (`{toolboxProxyUrl}/{sandboxId}/...`) request and response bodies, served by the agent.
