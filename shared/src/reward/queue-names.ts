/** Default BullMQ queue for reward jobs (one job per candidate). */
export const DEFAULT_REWARD_QUEUE = "reward";
